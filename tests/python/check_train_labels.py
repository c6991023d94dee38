#!/usr/bin/env python3
"""train/train.py labels text as halfserve reads it: the marks after a word label the word's first piece when they
are exactly one label's mark (as `halfserve eval` reads a reference), every mark halfserve strips leaves the input,
an ASCII mark inside a number stays, English words that start with a capital take the "+U" label, and windows keep
within their length with [CLS]/[SEP] unlabelled.

    check_train_labels.py VOCAB_DIR   (bert-base-chinese-vocab.txt, bert-base-uncased-vocab.txt)
"""
import pathlib
import re
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "train"))
import train  # noqa: E402
from harness import Checks  # noqa: E402

checks = Checks()
expect = checks.expect


def labelled(language, vocab, text):
    tokenizer = train.make_tokenizer(language, vocab)
    marks = {mark: i for i, mark in enumerate(train.MARK_LABELS[language]) if i}
    ids, labels = train.labelled_tokens(text, tokenizer, marks, train.CASED[language])
    return [(token, train.LABELS[language][label] if label >= 0 else "-")
            for token, label in zip(tokenizer.convert_ids_to_tokens(ids), labels)]


def main():
    vocab_dir = pathlib.Path(sys.argv[1])
    zh_vocab, en_vocab = vocab_dir / "bert-base-chinese-vocab.txt", vocab_dir / "bert-base-uncased-vocab.txt"
    # The marks halfserve strips before predicting, read from its source so the two cannot drift apart.
    source = (pathlib.Path(__file__).resolve().parents[2] / "src/text/punctuation.cc").read_text(encoding="utf-8")
    expect("common marks", train.COMMON_MARKS, set(re.search(r'kCommonMarks = U"([^"]*)"', source).group(1)))
    expect("zh", labelled("zh", zh_vocab, "天气好，走吧。你呢？！3.14；好"),
           [("天", "O"), ("气", "O"), ("好", "，"), ("走", "O"), ("吧", "。"), ("你", "O"), ("呢", "O"),  # "？！"
            ("3", "O"), (".", "O"), ("14", "O"), ("好", "O")])  # "；" is no label, and leaves the input
    expect("en", labelled("en", en_vocab, "Hello, world. Is Debian good? Yes!"),
           [("hello", ",+U"), ("world", "."), ("is", "O+U"), ("de", "O+U"), ("##bian", "-"), ("good", "?"),
            ("yes", "O+U")])
    # A full-width mark between ASCII words glues them once stripped ("Onreadline"): no word ends there, no label.
    expect("glued", labelled("zh", zh_vocab, "设为On，readline。"),
           [("设", "O"), ("为", "O"), ("on", "。"), ("##read", "-"), ("##line", "-")])
    # Marks after marks, with nothing between that makes a word, add nothing to the word before ("好。\u200b，").
    expect("marks after marks", labelled("en", en_vocab, "Fine.\u200b, go"), [("fine", ".+U"), ("go", "O")])
    expect("zh labels", train.LABELS["zh"], ["O", "，", "。", "？", "！", "、"])
    expect("en labels", train.LABELS["en"], ["O", ",", ".", "?", "O+U", ",+U", ".+U", "?+U"])

    tokenizer = train.make_tokenizer("zh", zh_vocab)
    marks = {mark: i for i, mark in enumerate(train.MARK_LABELS["zh"]) if i}
    paragraphs = ["今天天气很好，我们去公园玩吧。" * 7, "短句。", "这是一个很长的段落，" * 30]
    windows = train.pack(paragraphs, tokenizer, marks, 64, False)
    expect("window lengths", all(len(ids) <= 64 and len(ids) == len(labels) for ids, labels in windows), True)
    expect("[CLS]/[SEP]", all(ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id and
                              labels[0] == labels[-1] == -100 for ids, labels in windows), True)
    packed = [i for ids, _ in windows for i in ids[1:-1]]
    whole = [i for paragraph in paragraphs for i in train.labelled_tokens(paragraph, tokenizer, marks)[0]]
    expect("windows hold every token once, in order", packed, whole)

    checks.finish()


if __name__ == "__main__":
    main()
