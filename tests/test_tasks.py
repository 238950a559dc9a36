from pathlib import Path

import pytest

from agentopt.optimizer.tasks.errors import TaskError
from agentopt.optimizer.tasks import BUILTIN, load_task
from agentopt.optimizer.tasks.base import split_examples
from agentopt.optimizer.tasks.builtin import number_words
from agentopt.optimizer.tasks.metrics import contains, exact_match, normalise, token_f1


def test_at_least_eight_builtin_tasks_with_disjoint_seeded_splits() -> None:
    assert len(BUILTIN) >= 8
    for name in BUILTIN:
        task = load_task(name)
        ids = [e.id for s in ("train", "val", "test") for e in task.split(s)]
        assert len(ids) == len(set(ids)), name
        inputs = [{e.input for e in task.split(s)} for s in ("train", "val", "test")]
        assert not (inputs[0] & inputs[1] or inputs[0] & inputs[2] or inputs[1] & inputs[2]), f"{name} leaks inputs"
        assert all(task.train) and task.val and task.test
        assert load_task(name) == task, "generation must be deterministic"


def test_builtin_targets_are_right() -> None:
    assert number_words(42) == "forty-two"
    assert number_words(100) == "one hundred"
    assert number_words(919) == "nine hundred nineteen"
    task = load_task("sum")
    for e in task.train[:20]:
        a, b = map(int, e.input.split())
        assert int(e.target) == a + b
    for e in load_task("word_sorting").test[:20]:
        assert e.target.split() == sorted(e.input.split())
    for e in load_task("larger_animal").val[:20]:
        assert e.target in e.input.split(", ")


def test_metrics_normalise_case_and_punctuation() -> None:
    assert normalise('  "Elephant."  ') == "elephant"
    assert exact_match("Elephant.", "elephant") == 1.0
    assert exact_match("an elephant", "elephant") == 0.0
    assert contains("It is the elephant.", "elephant") == 1.0
    assert contains("elephants", "elephant") == 0.0
    assert token_f1("the big cat", "big cat") == pytest.approx(0.8)


def test_task_file_jsonl_and_csv(tmp_path: Path) -> None:
    jsonl = tmp_path / "t.jsonl"
    jsonl.write_text("".join(f'{{"input": "q{i}", "target": {i}}}\n' for i in range(10)))
    task = load_task(str(jsonl))
    assert task.name == "t" and len(task.train) + len(task.val) + len(task.test) == 10
    assert {e.target for e in task.test} <= {str(i) for i in range(10)}
    csv = tmp_path / "c.csv"
    csv.write_text("input,target,split\na,A,train\nb,B,val\nc,C,test\nd,D,train\n")
    task = load_task(str(csv))
    assert [e.input for e in task.train] == ["a", "d"] and task.test[0].target == "C"


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        ('{"input": "a", "target": "b"}\n{"input": "a" "target": "b"}\n', ".jsonl", "t.jsonl:2: not valid JSON"),
        ('{"input": "a", "target": "b"}\n["a", "b"]\n', ".jsonl", "t.jsonl:2: expected a JSON object"),
        ('{"input": "a", "target": "b"}\n{"input": "a"}\n', ".jsonl", "t.jsonl:2: field 'target'"),
        ("question,answer\na,b\n", ".csv", "t.csv:1: CSV header lacks column(s) input, target"),
        ('{"input": "a", "target": "b", "split": "dev"}\n', ".jsonl", "t.jsonl:1: split must be"),
        ('{"input": "a", "target": 1' + "0" * 5000 + "}\n", ".jsonl", "t.jsonl:1: not valid JSON"),
        ('{"input": "a", "target": "b"}\n{"input": "c", "target": Infinity}\n', ".jsonl",
         "t.jsonl:2: field 'target' must be a finite"),
        ('{"input": "a", "target": "b"}\n{"input": "", "target": "c"}\n', ".jsonl",
         "t.jsonl:2: field 'input' is empty"),
        ("input,target\na,b\nc,d\na,e\n", ".csv", "t.csv:4: repeats the input of line 2"),
        (b"\xef\xbb\xbfinput,target\n\xe9,b\n", ".csv", "t.csv:2: not UTF-8 text (byte 0xe9)"),
    ],
)
def test_task_file_errors_name_the_bad_line(tmp_path: Path, content: str | bytes, suffix: str, message: str) -> None:
    path = tmp_path / f"t{suffix}"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(TaskError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_task(str(path))


def test_task_file_with_bom_and_crlf_loads(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfinput,target,split\r\na,A,train\r\nb,2,val\r\nc,C,test\r\n")
    task = load_task(str(path))
    assert [e.input for e in task.train] == ["a"] and task.val[0].target == "2"


def test_generated_repeats_leave_train_and_val_and_test_keeps_its_ids() -> None:
    pairs = [("x", "1"), ("y", "2"), ("x", "1"), ("z", "3"), ("x", "1"), ("w", "4"), ("v", "5")]
    plain = split_examples([(str(i), t) for i, (_, t) in enumerate(pairs)], seed=0)  # same order, no repeats
    split = split_examples(pairs, seed=0)
    assert [e.id for e in split[2]] == [e.id for e in plain[2]], "the sealed test split is untouched"
    for kept, whole in zip(split[:2], plain[:2], strict=True):
        assert {e.id for e in kept} <= {e.id for e in whole}
    inputs = [{e.input for e in s} for s in split]
    assert not (inputs[0] & inputs[1] or inputs[0] & inputs[2] or inputs[1] & inputs[2])
    assert sum(map(len, split)) < len(pairs), "this seed puts 'x' in two splits, so a repeat was dropped"


def test_unknown_task_and_missing_file() -> None:
    with pytest.raises(TaskError, match="unknown task 'nope'"):
        load_task("nope")
    with pytest.raises(TaskError, match="task file not found"):
        load_task("missing.jsonl")
