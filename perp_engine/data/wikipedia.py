"""Wikipedia markup to prose: the articles of a MediaWiki XML dump (.bz2) as readable paragraphs.

Appendix sections, templates, references, tables, files, categories and interlanguage links are dropped, links are
replaced by their text and section titles kept as paragraphs of their own; mwparserfromhell parses the markup.
"""

from __future__ import annotations

import bz2
import re
import xml.etree.ElementTree as ET
from pathlib import Path

# appendix sections: Wikipedia's manual of style puts them last, so an article is cut at the first one
_APPENDIX = re.compile(
    r"^==\s*(see also|notes|references|further reading|external links|bibliography|sources|citations|"
    r"footnotes|notes and references|works cited|works)\s*==\s*$", re.IGNORECASE | re.MULTILINE)
_NON_PROSE_TAGS = {"ref", "references", "table", "gallery", "math", "chem", "timeline", "imagemap", "score",
                   "syntaxhighlight", "source", "hiero", "graph", "mapframe", "templatedata", "pre"}
_NON_PROSE_LINKS = {"file", "image", "category", "media"}
_INTERLANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z]+)*$")
_LEFTOVER_TAG = re.compile(r"<ref[^>]*/>|<ref[^>]*>.*?</ref>|</?[a-zA-Z][^<>]*>", re.IGNORECASE)
_LEFTOVER_LINE = re.compile(r"\[\[|\]\]|\{\{|\}\}|^\s*(\{\||\|\}|\||!)")


def wiki_articles(path: Path) -> list[tuple[str, str]]:
    """``[(title, prose)]`` of the main-namespace, non-redirect pages of a MediaWiki XML dump (.bz2)."""
    import mwparserfromhell

    articles = []
    with bz2.open(path) as stream:
        for _, element in ET.iterparse(stream):
            if not element.tag.endswith("}page"):
                continue
            namespace = element.findtext("{*}ns")
            text = element.findtext("{*}revision/{*}text") or ""
            if namespace == "0" and element.find("{*}redirect") is None:
                prose = _wiki_prose(mwparserfromhell, text)
                if prose:
                    articles.append((element.findtext("{*}title"), prose))
            element.clear()
    return articles


def _wiki_prose(mwparserfromhell, wikitext: str) -> str:
    """Readable paragraphs of one article: appendices, templates, references, tables, files and categories
    dropped, links replaced by their text, section titles kept as paragraphs of their own."""
    appendix = _APPENDIX.search(wikitext)
    code = mwparserfromhell.parse(wikitext[: appendix.start()] if appendix else wikitext)
    _drop_non_prose(code, mwparserfromhell.nodes)
    # markup the parser could not balance stays literal text: refs and tags are cut, table rows and
    # lines with unparsed links or templates are dropped
    text = _LEFTOVER_TAG.sub("", code.strip_code(normalize=True, collapse=True))
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        lines = [_tidy(line) for line in block.splitlines() if not _LEFTOVER_LINE.search(line)]
        lines = [line for line in lines if any(c.isalpha() for c in line)]
        if lines:
            paragraphs.append("\n".join(lines))
    return "\n\n".join(paragraphs)


def _drop_non_prose(code, nodes) -> None:
    """Remove non-prose nodes in one pass down the tree (``Wikicode.remove`` searches the whole tree per call,
    quadratic on long articles), recursing only where ``strip_code`` would render text."""
    kept = []
    for node in code.nodes:
        if isinstance(node, (nodes.Template, nodes.Comment)):
            continue
        if isinstance(node, nodes.Tag):
            if str(node.tag).strip().lower() in _NON_PROSE_TAGS:
                continue
            children = [node.contents]
        elif isinstance(node, nodes.Wikilink):
            title = str(node.title).strip()
            prefix = title.split(":", 1)[0].strip().lower() if ":" in title else ""
            if prefix in _NON_PROSE_LINKS or _INTERLANGUAGE.match(prefix):
                continue
            children = [node.title, node.text]
        elif isinstance(node, (nodes.Heading, nodes.ExternalLink)):
            children = [node.title]
        else:
            children = []
        for child in children:
            if child is not None:
                _drop_non_prose(child, nodes)
        if isinstance(node, nodes.Heading):  # a section title is a paragraph of its own
            kept.extend([nodes.Text("\n\n"), node, nodes.Text("\n\n")])
        else:
            kept.append(node)
    code.nodes = kept


def _tidy(line: str) -> str:
    """Collapse the gaps that removed templates and references leave inside a sentence."""
    line = re.sub(r"[ \t\u00a0]+", " ", re.sub(r"'{2,}", "", line)).strip()
    line = re.sub(r"\(\s*[,;]?\s*\)", "", line)
    return re.sub(r" +([,.;:!?)])", r"\1", line)
