"""BEIR loading and validation: every bad-input case, in strict and lenient mode."""

import json

import pytest

from retriever_assets.core.corpus import CorpusFormatError, load_beir_folder

GOOD_DOCS = [{"_id": f"d{i}", "title": f"T{i}", "text": f"text {i}"} for i in range(4)]
GOOD_QUERIES = [{"_id": "q1", "text": "first"}, {"_id": "q2", "text": "second"}]
GOOD_QRELS = "query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\td1\t1\n"


def make(tmp_path, *, corpus=None, queries=None, train=GOOD_QRELS, test=GOOD_QRELS, raw_corpus=None):
    (tmp_path / "qrels").mkdir(exist_ok=True)
    if raw_corpus is not None:
        (tmp_path / "corpus.jsonl").write_bytes(raw_corpus)
    else:
        (tmp_path / "corpus.jsonl").write_text("\n".join(
            r if isinstance(r, str) else json.dumps(r) for r in (corpus or GOOD_DOCS)) + "\n")
    (tmp_path / "queries.jsonl").write_text("\n".join(
        r if isinstance(r, str) else json.dumps(r) for r in (queries or GOOD_QUERIES)) + "\n")
    (tmp_path / "qrels" / "train.tsv").write_text(train)
    (tmp_path / "qrels" / "test.tsv").write_text(test)
    return tmp_path


def both(tmp_path, match, reason, **kw):
    """Strict raises naming file, line and problem; lenient skips and counts."""
    folder = make(tmp_path, **kw)
    with pytest.raises(CorpusFormatError, match=match):
        load_beir_folder(folder, splits=("train", "test"), mode="strict")
    loaded = load_beir_folder(folder, splits=("train", "test"), mode="lenient")
    assert loaded.report.counts[reason] >= 1, dict(loaded.report.counts)
    return loaded


def test_good_folder_loads_with_hashes(tmp_path):
    loaded = load_beir_folder(make(tmp_path), splits=("train", "test"))
    assert loaded.corpus.height == 4 and loaded.queries.height == 2
    assert loaded.corpus["content_hash"].n_unique() == 4
    assert sum(loaded.report.counts.values()) == 0


def test_malformed_json_line(tmp_path):
    loaded = both(tmp_path, r"corpus.jsonl, line 3: malformed JSON", "malformed JSON",
                  corpus=[*GOOD_DOCS[:2], '{"_id": "x", "text": ', *GOOD_DOCS[2:]])
    assert loaded.corpus.height == 4


@pytest.mark.parametrize(("record", "problem"), [
    ({"title": "no id", "text": "t"}, "missing '_id'"),
    ({"_id": "x", "title": "no text"}, "missing 'text'"),
    ({"_id": 7, "text": "t"}, "'_id' is int, expected a string"),
    ({"_id": "x", "text": ["a"]}, "'text' is list, expected a string"),
])
def test_missing_or_non_string_fields(tmp_path, record, problem):
    both(tmp_path, f"line 5: {problem}", problem, corpus=[*GOOD_DOCS, record])


def test_duplicate_ids(tmp_path):
    clash = {"_id": "d1", "title": "T1", "text": "changed"}
    both(tmp_path, "line 5: duplicate document id with different content.*first seen on line 2",
         "duplicate document id with different content", corpus=[*GOOD_DOCS, clash])
    same = load_beir_folder(make(tmp_path, corpus=[*GOOD_DOCS, GOOD_DOCS[1]]), splits=("train", "test"))
    assert same.corpus.height == 4
    assert same.report.counts["duplicate document id with identical content (kept once)"] == 1


def test_qrels_with_unknown_ids(tmp_path):
    both(tmp_path, r"train.tsv, line 4: qrels names an unknown query", "qrels names an unknown query",
         train=GOOD_QRELS + "q9\td0\t1\n")
    both(tmp_path, r"train.tsv, line 4: qrels names an unknown document", "qrels names an unknown document",
         train=GOOD_QRELS + "q1\td9\t1\n")


def test_score_zero_is_not_a_positive_and_query_without_positive_is_counted(tmp_path):
    loaded = load_beir_folder(make(tmp_path, train=GOOD_QRELS + "q1\td2\t0\n"), splits=("train", "test"))
    assert loaded.report.counts["qrels score 0 (kept, not a positive)"] == 1
    train = loaded.qrels.filter(loaded.qrels["split"] == "train")
    assert train.filter(train["score"] > 0).height == 2
    only_zero = load_beir_folder(make(tmp_path, train=GOOD_QRELS.replace("q2\td1\t1", "q2\td1\t0")),
                                 splits=("train", "test"))
    assert only_zero.report.counts["query without any positive in split"] == 1


def test_empty_corpus_or_split(tmp_path):
    folder = make(tmp_path)
    (folder / "corpus.jsonl").write_text("")
    with pytest.raises(CorpusFormatError, match="corpus.jsonl: corpus is empty"):
        load_beir_folder(folder, mode="lenient")
    folder = make(tmp_path, test="query-id\tcorpus-id\tscore\n")
    with pytest.raises(CorpusFormatError, match="test.tsv: split 'test' has no positive qrels"):
        load_beir_folder(folder, splits=("train", "test"), mode="lenient")
    with pytest.raises(CorpusFormatError, match="dev.tsv: file not found"):
        load_beir_folder(folder, splits=("dev",))


def test_non_utf8_bom_and_crlf(tmp_path):
    raw = b"\xef\xbb\xbf" + b"\r\n".join(json.dumps(d).encode() for d in GOOD_DOCS) + b"\r\n"
    loaded = load_beir_folder(make(tmp_path, raw_corpus=raw), splits=("train", "test"))
    assert loaded.corpus["doc_id"].to_list() == ["d0", "d1", "d2", "d3"]
    assert not loaded.corpus["text"].str.contains("\r").any()
    bad = raw + b'{"_id": "x", "text": "caf\xe9"}\n'
    both(tmp_path, r"line 5: not valid UTF-8", "not valid UTF-8", raw_corpus=bad)


def test_empty_or_whitespace_text(tmp_path):
    both(tmp_path, "line 5: empty document text", "empty document text",
         corpus=[*GOOD_DOCS, {"_id": "w", "title": "", "text": "  \t "}])


def test_qrels_header_missing_or_different(tmp_path):
    no_header = load_beir_folder(make(tmp_path, train="q1\td0\t1\nq2\td1\t1\n"), splits=("train", "test"))
    assert no_header.qrels.filter(no_header.qrels["split"] == "train").height == 2
    assert no_header.report.counts["qrels header missing (first line read as data)"] == 1
    other = load_beir_folder(make(tmp_path, train="qid\tdocid\trel\nq1\td0\t1\n"), splits=("train", "test"))
    assert other.report.counts["qrels header differs from 'query-id corpus-id score' (read by position)"] == 1


def test_extra_fields_are_ignored(tmp_path):
    docs = [d | {"metadata": {"x": 1}, "url": "u"} for d in GOOD_DOCS]
    loaded = load_beir_folder(make(tmp_path, corpus=docs), splits=("train", "test"))
    assert loaded.corpus.columns == ["doc_id", "title", "text", "content_hash"]
    assert sum(loaded.report.counts.values()) == 0


@pytest.mark.parametrize("text", ["", "   \t ", None])
def test_empty_whitespace_and_null_text_are_one_case(tmp_path, text):
    # without a title: an error in strict, a counted skip in lenient
    loaded = both(tmp_path, "line 5: empty document text: id 'w'", "empty document text",
                  corpus=[*GOOD_DOCS, {"_id": "w", "title": "", "text": text}])
    assert "w" not in loaded.corpus["doc_id"].to_list()
    # with a title: still an error in strict (naming the lenient remedy); lenient keeps the title only, counted
    folder = make(tmp_path, corpus=[*GOOD_DOCS, {"_id": "w", "title": "A title", "text": text}])
    with pytest.raises(CorpusFormatError, match="line 5: empty document text: id 'w' .*title only"):
        load_beir_folder(folder, splits=("train", "test"), mode="strict")
    kept = load_beir_folder(folder, splits=("train", "test"), mode="lenient")
    assert kept.corpus.filter(kept.corpus["doc_id"] == "w")["title"].to_list() == ["A title"]
    assert kept.report.counts["document with empty text kept as its title only"] == 1


def test_empty_query_text_is_an_error_or_a_counted_skip(tmp_path):
    loaded = both(tmp_path, "queries.jsonl, line 3: empty query text", "empty query text",
                  queries=[*GOOD_QUERIES, {"_id": "q3", "text": None}])
    assert loaded.queries.height == 2


def test_duplicate_qrels_never_lose_a_positive(tmp_path):
    conflict = GOOD_QRELS + "q1\td0\t0\n"  # a later 0 for a pair judged 1 on line 2
    loaded = both(tmp_path, r"train.tsv, line 4: conflicting duplicate judgement \(q1 d0: line 2 says 1, this line "
                  r"says 0\)", "conflicting duplicate judgement (higher score kept)", train=conflict)
    train = loaded.qrels.filter(loaded.qrels["split"] == "train")
    assert train.filter((train["query_id"] == "q1") & (train["doc_id"] == "d0"))["score"].to_list() == [1]
    # the other order: 0 first, 1 later -> still 1
    later = load_beir_folder(make(tmp_path, train=GOOD_QRELS.replace("q1\td0\t1", "q1\td0\t0") + "q1\td0\t1\n"),
                             splits=("train", "test"), mode="lenient")
    rows = later.qrels.filter((later.qrels["split"] == "train") & (later.qrels["query_id"] == "q1"))
    assert rows["score"].to_list() == [1]
    # identical duplicates: kept once, counted, fine in strict
    same = load_beir_folder(make(tmp_path, train=GOOD_QRELS + "q1\td0\t1\n"), splits=("train", "test"))
    assert same.report.counts["duplicate qrels row (kept once)"] == 1
    assert same.qrels.filter(same.qrels["split"] == "train").height == 2


OVERLAP = "query in both the training and the test qrels (dropped from training, kept in test)"


def test_a_query_in_both_train_and_test_is_refused_or_kept_for_test_only(tmp_path):
    # q2 is judged in both files: trained on, it would be tested on a query it saw, and its test-only positive d3
    # could be mined as one of its negatives
    queries = [*GOOD_QUERIES, {"_id": "q3", "text": "third"}]
    test = "query-id\tcorpus-id\tscore\nq3\td2\t1\nq2\td3\t1\n"
    folder = make(tmp_path, queries=queries, test=test)
    with pytest.raises(CorpusFormatError, match=r"test\.tsv, line 3: query 'q2' is in both the training qrels "
                                                r"\(train\.tsv, line 3\) and the test qrels"):
        load_beir_folder(folder, splits=("train", "test"), mode="strict", held_apart=("train", "test"))
    loaded = load_beir_folder(folder, splits=("train", "test"), mode="lenient", held_apart=("train", "test"))
    assert loaded.report.counts[OVERLAP] == 1, dict(loaded.report.counts)
    by_split = {s: set(loaded.qrels.filter(loaded.qrels["split"] == s)["query_id"]) for s in ("train", "test")}
    assert by_split == {"train": {"q1"}, "test": {"q2", "q3"}}
    assert any("q2" in e for e in loaded.report.examples)


def test_the_same_split_for_training_and_test_is_refused(tmp_path):
    folder = make(tmp_path)
    for mode in ("strict", "lenient"):
        with pytest.raises(CorpusFormatError, match=r"train\.tsv: train_split and test_split are both 'train'"):
            load_beir_folder(folder, splits=("train", "train"), mode=mode, held_apart=("train", "train"))


def test_ingest_holds_train_and_test_queries_apart(tmp_path):
    from resources.storage import StorageResource
    from retriever_assets.steps.ingest import ingest_corpus

    (tmp_path / "data").mkdir()
    folder = make(tmp_path / "data", queries=[*GOOD_QUERIES, {"_id": "q3", "text": "third"}],
                  test="query-id\tcorpus-id\tscore\nq3\td2\t1\nq2\td3\t1\n")
    storage = StorageResource(root=str(tmp_path / "storage"))
    with pytest.raises(CorpusFormatError, match="query 'q2' is in both"):
        ingest_corpus(storage, "x", folder, mode="strict", train_split="train", test_split="test")
    loaded, _ = ingest_corpus(storage, "x", folder, mode="lenient", train_split="train", test_split="test")
    assert loaded.report.counts[OVERLAP] == 1
    with pytest.raises(CorpusFormatError, match="are both 'test'"):
        ingest_corpus(storage, "x", folder, mode="lenient", train_split="test", test_split="test")
