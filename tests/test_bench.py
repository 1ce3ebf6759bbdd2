import json

from pneumo_utils.app.cli import main


def test_bench_prints_the_table_and_writes_json(tiny_data, tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert (
        main(
            [
                "bench",
                "--data",
                str(tiny_data),
                "--image-size",
                "32",
                "--batch-size",
                "8",
                "--batches",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    for row in (
        "(a) baseline",
        "(b) pneumo_utils",
        "(c) ceiling",
        "b / a",
        "b / c",
        "evaluation",
        "cache build",
        "peak memory",
    ):
        assert row in printed
    results = json.loads(out.read_text())
    assert results["b_over_a"] == results["b_pipeline"] / results["a_baseline"]
    assert results["cache_images"] == 116 and results["peak_memory_mb"] > 0
