"""Synthetic cultural-task files in the documented Hub schemas (../shared/DATASETS.md), for tests."""

from __future__ import annotations

import csv
import json
from pathlib import Path


def translations(path: Path, ids: list[str]) -> Path:
    """A translations file giving every id the source prompt "[translated] <id>"."""
    rows = [json.dumps({"id": i, "source_prompt": f"[translated] {i}"}) + "\n" for i in ids]
    path.write_text("".join(rows), encoding="utf-8")
    return path


# CulturalBench-Hard.csv as the dataset card describes it: four rows per question (one per option),
# answer written TRUE/FALSE (the csv builder reads it as a bool), possibly several TRUE per question.
HARD_ROWS = [
    (0, 10, "In China, what is given at New Year?", "Red envelopes", "TRUE", "China"),
    (1, 10, "In China, what is given at New Year?", "Clocks", "FALSE", "China"),
    (2, 10, "In China, what is given at New Year?", "Pears", "FALSE", "China"),
    (3, 10, "In China, what is given at New Year?", "Knives", "FALSE", "China"),
    (4, 11, "In Poland, what is eaten on Christmas Eve?", "Turkey", "FALSE", "Poland"),
    (5, 11, "In Poland, what is eaten on Christmas Eve?", "Carp", "TRUE", "Poland"),
    (6, 11, "In Poland, what is eaten on Christmas Eve?", "Pierogi", "TRUE", "Poland"),
    (7, 11, "In Poland, what is eaten on Christmas Eve?", "Tacos", "FALSE", "Poland"),
    (8, 12, "In Brazil, which dance is famous?", "Samba", "TRUE", "Brazil"),
    (9, 12, "In Brazil, which dance is famous?", "Tango", "FALSE", "Brazil"),
    (10, 12, "In Brazil, which dance is famous?", "Polka", "FALSE", "Brazil"),
    (11, 12, "In Brazil, which dance is famous?", "Waltz", "FALSE", "Brazil"),
    (12, 13, "In China, which utensils are used?", "Chopsticks", "TRUE", "China"),
    (13, 13, "In China, which utensils are used?", "Spoons", "TRUE", "China"),
    (14, 13, "In China, which utensils are used?", "Knives", "FALSE", "China"),
    (15, 13, "In China, which utensils are used?", "Sporks", "FALSE", "China"),
]


def culturalbench_csv(path: Path, hard: bool = False) -> Path:
    """CulturalBench-Easy.csv (three questions) or CulturalBench-Hard.csv (:data:`HARD_ROWS`)."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        if hard:
            writer.writerow(["data_idx", "question_idx", "prompt_question", "prompt_option", "answer", "country"])
            writer.writerows(HARD_ROWS)
            return path
        writer.writerow(["data_idx", "question_idx", "prompt_question", "prompt_option_a", "prompt_option_b",
                         "prompt_option_c", "prompt_option_d", "answer", "country"])
        writer.writerow([0, 10, "In China, what is given at New Year?", "Red envelopes", "Clocks", "Pears", "Knives",
                         "A", "China"])
        writer.writerow([1, 11, "In Poland, what is eaten on Christmas Eve?", "Turkey", "Carp", "Ham", "Tacos",
                         "B", "Poland"])
        writer.writerow([2, 12, "In Brazil, which dance is famous?", "Samba", "Tango", "Polka", "Waltz", "A", "Brazil"])
    return path


def hard_ids(question_rows: list[tuple]) -> list[str]:
    """The instance ids of Hard rows: culturalbench-<question_idx>-<data_idx>."""
    return [f"culturalbench-{question}-{data}" for data, question, *_ in question_rows]
