"""Checks `halfserve tokenize` against transformers' BertTokenizer (the slow, Python one) on random text.

Usage: check_tokenizer_parity.py HALFSERVE VOCAB_DIR [--count N] [--seed S]

For each configuration (vocabulary, lower case, accent stripping) it generates N random lines (CJK, accented
Latin, combining marks, Hangul, Greek, digits, ASCII/CJK/full-width punctuation, emoji, spaces, control and format
characters, special tokens, vocabulary words, very long words), runs halfserve once on all of them and compares the
tokens and ids with BertTokenizer.tokenize() + convert_tokens_to_ids(). It also checks that the spans are
increasing, never overlap, sit on character boundaries and cover the original characters each token came from.
Prints a summary; exits 1 listing the first mismatches.
"""

import argparse
import json
import random
import subprocess
import sys
import unicodedata
import warnings

warnings.filterwarnings("ignore")
from transformers import BertTokenizer  # noqa: E402
from transformers.models.bert import tokenization_bert  # noqa: E402

# (vocabulary file, do_lower_case, strip_accents, the halfserve flags that ask for the same)
CONFIGURATIONS = [
    ("bert-base-chinese-vocab.txt", False, None, []),
    ("bert-base-chinese-vocab.txt", True, None, ["--lower"]),
    ("bert-base-uncased-vocab.txt", True, None, ["--lower"]),
    ("bert-base-uncased-vocab.txt", True, False, ["--lower", "--no-strip-accents"]),
    ("bert-base-uncased-vocab.txt", False, None, []),
]
SPECIAL_TOKENS = ["[UNK]", "[SEP]", "[PAD]", "[CLS]", "[MASK]"]


def assigned_in_python(code):
    # Python 3.11 knows Unicode 14; utf8proc may be newer. Random code points come only from what both assign.
    return unicodedata.category(chr(code)) not in ("Cn", "Cs")


def pick(rng, first, last):
    return chr(rng.randint(first, last))


class TextGenerator:
    def __init__(self, rng, vocab):
        self.rng = rng
        self.words = [w[2:] if w.startswith("##") else w for w in vocab if w and not w.startswith("[")]
        self.any_code_points = [c for c in range(0x20, 0x30000) if assigned_in_python(c)]
        self.makers = [
            (6, self.vocabulary_word),
            (4, self.cjk),
            (3, self.latin_word),
            (2, self.accented_word),
            (2, self.combining_sequence),
            (2, self.space),
            (2, self.ascii_punctuation),
            (2, self.cjk_punctuation),
            (1, self.digits),
            (1, self.full_width),
            (1, self.emoji),
            (1, self.hangul),
            (1, self.greek),
            (1, self.other_script),
            (1, self.control),
            (1, self.special_token),
            (1, self.any_code_point),
            (0.2, self.long_word),
        ]
        self.weights = [w for w, _ in self.makers]

    def line(self):
        parts = self.rng.choices(self.makers, weights=self.weights, k=self.rng.randint(0, 14))
        return "".join(maker() for _, maker in parts)

    def vocabulary_word(self):
        word = self.rng.choice(self.words)
        return word.upper() if self.rng.random() < 0.15 else word.capitalize() if self.rng.random() < 0.2 else word

    def cjk(self):
        ranges = [(0x4E00, 0x9FFF), (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0xF900, 0xFAD9), (0x20000, 0x2A6DF),
                  (0x2F800, 0x2FA1D), (0x3040, 0x30FF)]
        return "".join(pick(self.rng, *self.rng.choice(ranges)) for _ in range(self.rng.randint(1, 6)))

    def latin_word(self):
        letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
        return "".join(self.rng.choice(letters) for _ in range(self.rng.randint(1, 12)))

    def accented_word(self):
        pool = [chr(c) for c in list(range(0xC0, 0x250)) if assigned_in_python(c)] + list("İıßẞǅǈǋﬁﬂŉ")
        return "".join(self.rng.choice(pool + list("aeiou")) for _ in range(self.rng.randint(1, 8)))

    def combining_sequence(self):
        base = self.rng.choice(list("aeiouAEIOUnNcCsSzZ") + ["K", "\u212a", "\u212b", "\u2126", "\u0b47", "\u1100"])
        marks = "".join(pick(self.rng, 0x300, 0x36F) for _ in range(self.rng.randint(0, 3)))
        extra = self.rng.choice(["", "\u0b3e", "\u1161", "\u1161\u11a8", "\u0344", "\u0323\u0301", "\u20dd"])
        return base + marks + extra

    def space(self):
        return self.rng.choice([" ", " ", "  ", "\t", "\r", "\u3000", "\u00a0", "\u2009", "\u2028", "\u2029", "\u202f"])

    def ascii_punctuation(self):
        return "".join(self.rng.choice("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~") for _ in range(self.rng.randint(1, 3)))

    def cjk_punctuation(self):
        return self.rng.choice(list("，。、！？；：「」『』《》（）…—～·“”‘’【】〈〉") + ["\u2014\u2014", "\u00b7"])

    def digits(self):
        return str(self.rng.randint(0, 10 ** self.rng.randint(1, 8)))

    def full_width(self):
        return "".join(pick(self.rng, 0xFF01, 0xFF5E) for _ in range(self.rng.randint(1, 5)))

    def emoji(self):
        single = pick(self.rng, 0x1F300, 0x1F6FF)
        while not assigned_in_python(ord(single)):  # those new in Unicode 15 are a known difference
            single = pick(self.rng, 0x1F300, 0x1F6FF)
        return self.rng.choice([single, single + "\ufe0f", "\U0001F44D\U0001F3FD", "\U0001F468\u200d\U0001F469",
                                "\u2764\ufe0f", "\U0001F1E8\U0001F1F3"])

    def hangul(self):
        return "".join(pick(self.rng, 0xAC00, 0xD7A3) for _ in range(self.rng.randint(1, 4)))

    def greek(self):
        return self.rng.choice(["ΟΔΟΣ", "Σ", "ΣΑΣ", "ὈΔΥΣΣΕΎΣ", "άέήίόύώ", "ΐ", "ς"])

    def other_script(self):
        return self.rng.choice(["Привет", "ЁЖИК", "مرحبا", "שָׁלוֹם", "नमस्ते", "สวัสดี", "ᏣᎳᎩ", "Ǳ", "ﬀ",
                                "①②", "½", "™", "㎏", "\u0130STANBUL", "straße"])

    def control(self):
        return self.rng.choice(["\x00", "\x01", "\x07", "\x1b", "\x1f", "\x7f", "\x85", "\x9f", "\u200b", "\u200d",
                                "\u200e", "\u2060", "\ufeff", "\ufffd", "\ue000", "\U000F0000", "\u0378", "\ufdd0",
                                "\u00ad", "\u180e", "\x0b", "\x0c", "\x1c"])

    def special_token(self):
        token = self.rng.choice(SPECIAL_TOKENS)
        variant = self.rng.random()
        if variant < 0.2:
            return token.lower()
        if variant < 0.3:
            return token[:3] + "\u200b" + token[3:]
        if variant < 0.35:
            return token[:3] + "\u0301" + token[3:]
        return token

    def any_code_point(self):
        return chr(self.rng.choice(self.any_code_points))

    def long_word(self):
        return self.rng.choice(["a", "ab", "中", "x"]) * self.rng.randint(95, 110)


def reference_tokenizer(vocab_path, lower, strip_accents):
    return BertTokenizer(vocab_file=vocab_path, do_lower_case=lower, strip_accents=strip_accents,
                         tokenize_chinese_chars=True)


def run_halfserve(halfserve, vocab_path, flags, lines):
    data = "".join(line + "\n" for line in lines).encode("utf-8")
    result = subprocess.run([halfserve, "tokenize", "--vocab", vocab_path, *flags], input=data,
                            capture_output=True, check=False)
    if result.returncode != 0:
        sys.exit(f"halfserve tokenize failed ({result.returncode}): {result.stderr.decode(errors='replace')}")
    replies = [json.loads(line) for line in result.stdout.decode("utf-8").splitlines()]
    if len(replies) != len(lines):
        sys.exit(f"halfserve tokenize printed {len(replies)} lines for {len(lines)} texts")
    return replies


class Normaliser:
    """What BasicTokenizer makes of a piece of text before splitting it, with the whitespace taken out."""

    def __init__(self, lower, strip_accents):
        self.lower = lower
        self.strip = strip_accents if strip_accents is not None else lower
        self.basic = tokenization_bert.BasicTokenizer(do_lower_case=lower, strip_accents=strip_accents)

    def __call__(self, text):
        if self.lower:
            text = "".join(c.lower() for c in text)
        text = unicodedata.normalize("NFC", self.basic._clean_text(text))
        if self.lower:
            text = text.lower()
        if self.strip:
            text = self.basic._run_strip_accents(text)
        return "".join(text.split())


def span_problems(text, reply, normalise, unk):
    """Every way the spans of one reply break the span contract, as strings."""
    data = text.encode("utf-8")
    problems = []
    previous_end = 0
    for (begin, end), token in zip(reply["spans"], reply["tokens"]):
        if not (previous_end <= begin <= end <= len(data)):
            problems.append(f"span [{begin}, {end}) of {token!r} is out of order or range")
        for offset in (begin, end):
            if offset < len(data) and 0x80 <= data[offset] < 0xC0:
                problems.append(f"span [{begin}, {end}) of {token!r} cuts a character")
        previous_end = end
    if problems:
        return problems

    def piece_text(token):
        return token[2:] if token.startswith("##") else token

    def original(begin, end):
        return data[begin:end].decode("utf-8")

    # Group each word's pieces: a word starts at a token that is not a "##" continuation.
    groups = []
    for index, token in enumerate(reply["tokens"]):
        if index == 0 or not token.startswith("##"):
            groups.append([])
        groups[-1].append(index)
    for group in groups:
        tokens = [reply["tokens"][i] for i in group]
        begin, end = reply["spans"][group[0]][0], reply["spans"][group[-1]][1]
        source = original(begin, end)
        if tokens == [unk]:
            if not normalise(source):
                problems.append(f"{unk} at [{begin}, {end}) covers no text")
            continue
        if len(tokens) == 1 and tokens[0] in SPECIAL_TOKENS and source == tokens[0]:
            continue
        joined = "".join(piece_text(t) for t in tokens)
        if normalise(source) != joined:
            problems.append(f"word {tokens} at [{begin}, {end}) covers {source!r}, which normalises to "
                            f"{normalise(source)!r}")
            continue
        # Each piece: exactly its own characters, unless a piece boundary falls inside an original character
        # (a Hangul syllable into jamo) or inside one that NFC composed from several (jamo into a syllable, which
        # accent stripping decomposes again): then a piece covers the whole character and the next ones start
        # after it.
        splits_a_character = any(len(normalise(c)) > 1 for c in source + unicodedata.normalize("NFC", source))
        for i in group:
            piece_begin, piece_end = reply["spans"][i]
            piece = piece_text(reply["tokens"][i])
            if piece_begin == piece_end:
                if not (splits_a_character and reply["tokens"][i].startswith("##")):
                    problems.append(f"piece {reply['tokens'][i]!r} has an empty span")
            elif normalise(original(piece_begin, piece_end)) != piece and not splits_a_character:
                problems.append(f"piece {reply['tokens'][i]!r} at [{piece_begin}, {piece_end}) covers "
                                f"{original(piece_begin, piece_end)!r}")
    return problems


def check_configuration(args, vocab_name, lower, strip_accents, flags, rng, failures):
    vocab_path = f"{args.vocab_dir}/{vocab_name}"
    reference = reference_tokenizer(vocab_path, lower, strip_accents)
    generator = TextGenerator(rng, list(reference.vocab.keys()))
    lines = [generator.line() for _ in range(args.count)]
    replies = run_halfserve(args.halfserve, vocab_path, flags, lines)
    normalise = Normaliser(lower, strip_accents)
    name = f"{vocab_name} {' '.join(flags) or '(cased)'}"
    token_mismatches = span_failures = tokens_seen = 0
    for text, reply in zip(lines, replies):
        expected_tokens = reference.tokenize(text)
        expected_ids = reference.convert_tokens_to_ids(expected_tokens)
        tokens_seen += len(expected_tokens)
        if reply["tokens"] != expected_tokens or reply["ids"] != expected_ids:
            token_mismatches += 1
            failures.append(f"[{name}] {text!r}\n    expected {list(zip(expected_tokens, expected_ids))}\n"
                            f"    got      {list(zip(reply['tokens'], reply['ids']))}")
            continue
        problems = span_problems(text, reply, normalise, reference.unk_token)
        if problems:
            span_failures += 1
            failures.append(f"[{name}] spans of {text!r}: {'; '.join(problems[:3])}\n    "
                            f"{list(zip(reply['tokens'], reply['spans']))}")
    print(f"{name}: {len(lines)} texts, {tokens_seen} tokens, {token_mismatches} token/id mismatches, "
          f"{span_failures} with bad spans")
    return len(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("halfserve")
    parser.add_argument("vocab_dir")
    parser.add_argument("--count", type=int, default=3000, help="texts per configuration")
    parser.add_argument("--seed", type=int, default=20240611)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    failures = []
    total = 0
    for vocab_name, lower, strip_accents, flags in CONFIGURATIONS:
        total += check_configuration(args, vocab_name, lower, strip_accents, flags, rng, failures)
    print(f"tokenizer parity: {total} texts, {len(failures)} failing")
    if failures:
        print("first failures:")
        for failure in failures[:15]:
            print("  " + failure)
        sys.exit(1)


if __name__ == "__main__":
    main()
