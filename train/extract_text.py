#!/usr/bin/env python3
"""Punctuated prose from Debian documentation packages, for the punctuation models' training and test text.

    python3 train/extract_text.py zh|en OUT_DIR [--debs DIR]

Downloads the packages named in train/DATA.md with `apt-get download` (into --debs, default OUT_DIR/debs), unpacks
them with `dpkg-deb -x`, and keeps paragraphs of prose: HTML (and desktop help's Mallard/DocBook XML) text outside
<pre>, <table>, <script>, <style> and <info>; man-page text without its roff requests; reStructuredText paragraphs
and list items. A paragraph is kept when it is mostly the language's script and ends with a sentence mark, so code,
tables, menus and lists of names drop out. Paragraphs are deduplicated across
all packages (manuals repeat themselves and each other). The split is by document: every file whose path hashes into
the last tenth goes to test.txt, never to train.txt. Writes OUT_DIR/{train,test}.txt (one paragraph per line) and
OUT_DIR/sources.json (paragraphs and characters per package and split). Only the standard library; nothing is
executed from the packages.
"""
import argparse
import gzip
import hashlib
import html.parser
import json
import os
import pathlib
import re
import subprocess
import sys

# GNOME and MATE applications whose help (usr/share/help/zh_CN, Mallard pages and DocBook) has the most Chinese prose
# (each of these gives over 1500 characters; the other help packages of the 2026-12-06 survey give less or none).
DESKTOP_HELP = ["mate-user-guide", "aisleriot", "gnome-user-docs", "gedit-common", "brasero-common", "evince-common",
                "gnome-system-tools", "gnome-devel-docs"]
# Order matters: a paragraph seen twice is kept where it is first seen, so a package added later never moves an
# earlier package's paragraph between the splits.
PACKAGES = {
    "zh": ["manpages-zh", "debian-reference-zh-cn", "debian-faq-zh-cn", "maint-guide-zh-cn",
           "debian-edu-doc-zh-cn", "gimp-help-zh-cn", "debian-handbook", "libreoffice-help-zh-cn",
           "linux-doc-6.1", "installation-guide-amd64", "debmake-doc", "kicad-doc-zh", "rust-web-doc"] + DESKTOP_HELP,
    "en": ["debian-handbook", "debian-reference-en", "debian-faq", "developers-reference", "debian-policy",
           "maint-guide", "gnu-standards"],
}
# Packages that hold several languages: only paths containing the language's marker are read.
LANGUAGE_PATHS = {
    "zh": {"debian-handbook": "/zh-CN/", "linux-doc-6.1": "/Documentation/translations/zh_", "installation-guide-amd64": "/zh_CN/",
           "debmake-doc": ".zh-cn.", "rust-web-doc": "/rust-by-example/zh/", **{p: "/help/zh_CN/" for p in DESKTOP_HELP}},
    "en": {"debian-handbook": "/en-US/"},
}
# linux-doc's zh_TW folder translates the same documents as zh_CN (often converted from them): a document and its
# other-script twin hash as one path, so both land in the same split.
SPLIT_ALIASES = [("/translations/zh_TW/", "/translations/zh_CN/")]
SENTENCE_END = {"zh": "。？！", "en": ".?!"}
# Inline code (<code>, <tt>, <kbd>) stays: it is part of its sentence, and dropping it would leave holes in the prose.
# HTML, and the Mallard and DocBook XML of desktop help (<info> holds credits and licences, not prose).
SKIPPED_TAGS = {"pre", "table", "script", "style", "screen", "programlisting", "info", "synopsis"}
BLOCK_TAGS = {"p", "div", "li", "dd", "dt", "h1", "h2", "h3", "h4", "h5", "h6", "br", "td", "th", "blockquote",
              "title", "section", "tr", "ul", "ol", "dl", "para", "item", "listitem", "note", "entry", "term",
              "page", "chapter", "sect1", "sect2", "sect3"}


class ProseParser(html.parser.HTMLParser):
    """Collects the text of an HTML page as paragraphs, leaving out code and tables."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.paragraphs, self.current, self.skip_depth = [], [], 0

    def flush(self):
        text = " ".join("".join(self.current).split())
        if text:
            self.paragraphs.append(text)
        self.current = []

    def handle_starttag(self, tag, attrs):
        if tag in SKIPPED_TAGS:
            self.skip_depth += 1
        if tag in BLOCK_TAGS:
            self.flush()

    def handle_endtag(self, tag):
        if tag in SKIPPED_TAGS and self.skip_depth:
            self.skip_depth -= 1
        if tag in BLOCK_TAGS:
            self.flush()

    def handle_data(self, data):
        if not self.skip_depth:
            self.current.append(data)


ROFF_ESCAPE = re.compile(r"\\f[BIRP]|\\f\(..|\\s[-+]?\d|\\\(..|\\[&|^e-]|\\\*\(..|\\\*.")


def man_paragraphs(text):
    """Paragraphs of a man page: roff requests (.TH, .SH, .B …) end a paragraph; escapes are dropped."""
    paragraphs, current = [], []
    in_example = False
    for line in text.splitlines():
        if line.startswith((".nf", ".EX")):
            in_example = True
        elif line.startswith((".fi", ".EE")):
            in_example = False
        if line.startswith((".", "'")) or in_example or not line.strip():
            if current:
                paragraphs.append(" ".join(current))
            current = []
            continue
        current.append(ROFF_ESCAPE.sub("", line).strip())
    if current:
        paragraphs.append(" ".join(current))
    return paragraphs


def is_prose(paragraph, language):
    if len(paragraph) < 12 or paragraph[-1] not in SENTENCE_END[language]:
        return False
    if language == "zh":
        cjk = sum(1 for c in paragraph if "\u4e00" <= c <= "\u9fff")
        return cjk >= 0.6 * len(paragraph.replace(" ", "")) and "，" in paragraph + "。"
    letters = sum(1 for c in paragraph if c.isalpha() or c == " ")
    words = paragraph.split()
    return len(words) >= 6 and letters >= 0.85 * len(paragraph) and not paragraph.isupper()


RST_INLINE = [(re.compile(r":[a-z:]+:`([^`<]*?)\s*(<[^`>]*>)?`"), r"\1"),  # :ref:`text <target>` -> text
              (re.compile(r"``([^`]*)``"), r"\1"), (re.compile(r"`([^`<]*?)\s*(<[^`>]*>)?`_{0,2}"), r"\1"),
              (re.compile(r"\*\*([^*]+)\*\*"), r"\1"), (re.compile(r"\[#?\w*\]_"), "")]
RST_ADORNMENT = re.compile(r"^([=\-~^\"'`#*+:.])\1{2,}\s*$")


def join_lines(lines):
    """Wrapped lines of one paragraph: Chinese joins without a space, Latin words with one."""
    text = ""
    for line in lines:
        if text and line and text[-1].isascii() and text[-1].isalnum() and line[0].isascii() and line[0].isalnum():
            text += " "
        text += line
    return text


RST_BULLET = re.compile(r"^\s{0,3}(?:[-*+]|#\.|\d+\.)\s+")


def rst_items(block):
    """A block as paragraphs: one per list item (its bullet removed), or the block itself; None for an indented
    block that is no list (literal code after "::", a directive's body, a quote)."""
    lines = [line for line in block.splitlines() if not RST_ADORNMENT.match(line)]
    if not lines:
        return []
    if not RST_BULLET.match(lines[0]):
        return None if lines[0][:1].isspace() else [lines]
    items = []
    for line in lines:
        if RST_BULLET.match(line):
            items.append([RST_BULLET.sub("", line)])
        else:
            items[-1].append(line)
    return items


def rst_paragraphs(text):
    """Paragraphs of a reStructuredText file: blocks between blank lines, and list items. Indented blocks,
    directives, tables, headings' adornments and field lists drop out; inline roles and links keep their text."""
    paragraphs = []
    for block in re.split(r"\n\s*\n", text):
        items = rst_items(block)
        if not items or items[0][0].startswith(("..", "+", "|", ":", "=")):
            continue
        for lines in items:
            paragraph = join_lines(line.strip() for line in lines)
            for pattern, replacement in RST_INLINE:
                paragraph = pattern.sub(replacement, paragraph)
            paragraphs.append(paragraph)
    return paragraphs


def document_paragraphs(path, language):
    name = path.name
    if name.endswith(".rst.gz"):
        with gzip.open(path, "rb") as f:
            return rst_paragraphs(f.read(4 << 20).decode("utf-8", errors="replace").lstrip("\ufeff"))
    if name.endswith((".html", ".htm", ".page", ".xml")):
        parser = ProseParser()
        parser.feed(path.read_text(encoding="utf-8", errors="replace"))
        parser.flush()
        return parser.paragraphs
    if "/man/" in str(path) and name.endswith(".gz"):
        with gzip.open(path, "rb") as f:
            data = f.read(4 << 20)  # the largest man page is far smaller; a bound keeps a bad file harmless
        return man_paragraphs(data.decode("utf-8", errors="replace"))
    return []


def in_test_split(relative_path):
    for alias, canonical in SPLIT_ALIASES:
        relative_path = relative_path.replace(alias, canonical)
    return hashlib.sha256(relative_path.encode()).digest()[0] % 10 == 9


def unpack(package, debs, unpacked):
    target = unpacked / package
    if not target.exists():
        found = sorted(debs.glob(f"{package}_*.deb"))
        if not found:
            subprocess.run(["apt-get", "download", package], cwd=debs, check=True, stdout=subprocess.DEVNULL)
            found = sorted(debs.glob(f"{package}_*.deb"))
        partial = target.with_suffix(".partial")
        subprocess.run(["rm", "-rf", str(partial)], check=True)
        partial.mkdir(parents=True)
        subprocess.run(["dpkg-deb", "-x", str(found[-1]), str(partial)], check=True)
        partial.rename(target)
    return target


def main():
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("language", choices=sorted(PACKAGES))
    arguments.add_argument("out_dir", type=pathlib.Path)
    arguments.add_argument("--debs", type=pathlib.Path)
    options = arguments.parse_args()
    language, out_dir = options.language, options.out_dir
    debs = options.debs or out_dir / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    seen, splits, sources = set(), {"train": [], "test": []}, {}
    for package in PACKAGES[language]:
        root = unpack(package, debs, out_dir / "unpacked")
        counts = sources.setdefault(package, {"train": [0, 0], "test": [0, 0]})
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = str(path.relative_to(root))
            wanted = LANGUAGE_PATHS[language].get(package)
            if wanted and wanted not in "/" + relative:
                continue
            split = "test" if in_test_split(package + "/" + relative) else "train"
            for paragraph in document_paragraphs(path, language):
                digest = hashlib.sha256(paragraph.encode()).digest()
                if digest in seen or not is_prose(paragraph, language):
                    continue
                seen.add(digest)
                splits[split].append(paragraph)
                counts[split][0] += 1
                counts[split][1] += len(paragraph)
        print(f"extract_text: {package}: {counts}", file=sys.stderr)
    for split, paragraphs in splits.items():
        temporary = out_dir / f".{split}.txt.partial"
        temporary.write_text("".join(p + "\n" for p in paragraphs), encoding="utf-8")
        os.replace(temporary, out_dir / f"{split}.txt")
    (out_dir / "sources.json").write_text(json.dumps(sources, indent=1) + "\n")


if __name__ == "__main__":
    main()
