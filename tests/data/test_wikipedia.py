"""perp_engine.data.wikipedia: MediaWiki markup stripped to prose, articles read from a dump."""

from __future__ import annotations

import bz2

from perp_engine.data import wikipedia
from perp_engine.data.wikipedia import wiki_articles

WIKITEXT = """{{Infobox thing|name=Widget|size={{convert|3|m}}}}
'''Widget''' is a [[tool|hand tool]] used in ''workshops''.<ref>{{cite book|title=Tools}}</ref> It is sold in [[Star Wars: Episode IV|cinemas]] too.<ref name="a"/>
[[File:Widget.jpg|thumb|A [[widget]] on a bench]]

== History ==
Widgets date from 1900.<!-- hidden comment --> See [http://example.com the maker].
{| class="wikitable"
|-
| cell one || cell two
|}
The formula <math>x^2</math> is used.

== See also ==
* [[Gadget]]

== References ==
{{Reflist}}
[[Category:Tools]]
[[de:Werkzeug]]
"""


def test_wiki_markup_is_stripped_to_prose():
    import mwparserfromhell

    prose = wikipedia._wiki_prose(mwparserfromhell, WIKITEXT)
    assert prose.split("\n\n") == [
        "Widget is a hand tool used in workshops. It is sold in cinemas too.",
        "History",
        "Widgets date from 1900. See the maker.",
        "The formula is used.",
    ]


def test_wiki_articles_skip_redirects_and_other_namespaces(tmp_path):
    def page(title, ns, body, redirect=False):
        red = f'<redirect title="{body}" />' if redirect else ""
        return (f"<page><title>{title}</title><ns>{ns}</ns><id>1</id>{red}"
                f"<revision><text>{body}</text></revision></page>")

    xml = ('<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">'
           + page("Alpha", 0, "Alpha is a letter.")
           + page("Old", 0, "#REDIRECT [[Alpha]]", redirect=True)
           + page("Wikipedia:Rules", 4, "Project page text.")
           + page("Beta", 0, "Beta is the second letter.")
           + "</mediawiki>")
    path = tmp_path / "dump.xml.bz2"
    path.write_bytes(bz2.compress(xml.encode()))
    assert wiki_articles(path) == [("Alpha", "Alpha is a letter."), ("Beta", "Beta is the second letter.")]
