"""GROUP"""
