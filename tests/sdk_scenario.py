"""One scenario of SDK calls, run on ``comet_ml.OfflineExperiment`` (in a child process, see
``python sdk_scenario.py OUT FILES``) and on comet-journal's ``Experiment``; the differential
test compares what each recorded. Every method both have is called, with a nested dict, a
prefix, a no-step metric, a numpy value and a None wherever they apply."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
import zipfile

import numpy as np

QUIET_SDK = dict(log_code=False, log_graph=False, auto_output_logging=None,
                 log_env_details=False, log_git_metadata=False, log_git_patch=False,
                 log_env_gpu=False, log_env_host=False, log_env_cpu=False,
                 log_env_network=False, log_env_disk=False, auto_param_logging=False,
                 auto_metric_logging=False, parse_args=False, display_summary_level=0)


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def make_files(folder: str) -> None:
    os.makedirs(os.path.join(folder, "model", "sub"), exist_ok=True)
    for name, text in (("model/weights.bin", "w" * 100), ("model/sub/config.json", "{}"),
                       ("notes.txt", "notes\n"), ("train.py", "print('hi')\n"),
                       ("pic.png", "not really a png")):
        with open(os.path.join(folder, name), "w") as fh:
            fh.write(text)


def scenario(exp, files: str) -> dict:
    """The calls. Returns what the getters said (identity, tags)."""
    exp.log_metric("loss", 0.5)  # no step yet: none
    exp.log_metric("loss", np.float32(0.25), step=1)
    exp.log_metric("acc", 0.9)  # no step: the current one (1)
    exp.log_metric("np_int", np.int64(7), step=2, epoch=1)
    exp.log_metric("text_metric", "abc")
    exp.log_metric("list_metric", [1, 2])
    exp.log_metric("none_metric", None)  # refused by both, with a warning
    with exp.train():
        exp.log_metric("ctx", 1.5)
        exp.log_metrics({"a": 1, "b": {"c": np.float64(2.5)}}, prefix="pre")
    with exp.validate():
        exp.log_metrics({"x": {"y": 3}})
    with exp.test():
        exp.log_metric("t", 0.1, include_context=False)
    exp.set_step(10)
    exp.set_epoch(3)
    exp.log_metric("after_set", 1.0)
    exp.log_parameter("lr", np.float64(0.01))
    exp.log_parameter("none_param", None)
    exp.log_parameter("path_param", __import__("pathlib").Path("/data/x"))
    exp.log_parameter("dict_param", {"k": 1})
    exp.log_parameter("list_param", (1, 2, 3), step=4)
    exp.log_parameters({"opt": {"name": "adam", "betas": {"b1": 0.9}}, "seed": None},
                       prefix="hp")
    exp.log_parameters({"flat": np.int32(3)})
    exp.log_other("o_none", None)
    exp.log_other("o_dict", {"a": 1})
    exp.log_other("o_np", np.float32(1.5))
    exp.log_others({"o_list": [1, 2], "o_str": "s"})
    exp.log_html("<p>hi</p>")
    exp.log_html_url("https://example.test/a", label="Link")
    exp.log_html_url("https://example.test/b", text="B")
    exp.set_name("diff-run")
    exp.add_tag("t1")
    exp.add_tags(["t2", "t3"])
    exp.set_model_graph("Linear(2, 1)")
    exp.log_text("some text", step=5, metadata={"m": 1})
    exp.log_asset(os.path.join(files, "notes.txt"), step=6)
    exp.log_asset_data("data!", name="d.txt", epoch=2)
    exp.log_asset_data({"j": 1}, file_name="j.json", metadata={"k": "v"})
    exp.log_model("my-model", os.path.join(files, "model"))
    exp.log_model("single", os.path.join(files, "notes.txt"), metadata={"k": 1})
    exp.log_asset_folder(os.path.join(files, "model"), step=7, log_file_name=True,
                         recursive=True)
    exp.log_code(code="x = 1\n", code_name="snippet.py")
    exp.log_code(file_name=os.path.join(files, "train.py"))
    exp.log_confusion_matrix(y_true=[0, 1, 1, 2], y_predicted=[0, 1, 0, 2],
                             labels=["a", "b", "c"], step=8, title="cm")
    exp.log_confusion_matrix(matrix=[[1, 0], [1, 1]], file_name="m.json")
    exp.log_curve("roc", x=[0, 0.5, 1], y=[0, 0.7, 1], step=9)
    exp.log_table("table.csv", tabular_data=[[1, 2], [3, 4]], headers=["a", "b"])
    exp.log_histogram_3d([1, 2, 2, 3, -1, 0], name="h", step=11)
    exp.log_histogram_3d(np.array([0.5, 0.25]))
    exp.log_image(os.path.join(files, "pic.png"), name="pic.png", step=12)
    if _installed("PIL") and _installed("matplotlib"):  # optional in both
        import matplotlib
        matplotlib.use("Agg")
        from matplotlib import pyplot

        exp.log_image(np.zeros((4, 4, 3)), name="pixels", step=13)
        figure = pyplot.figure()
        pyplot.plot([1, 2])
        exp.log_figure("fig1", figure, step=14)
        exp.log_figure(figure=figure)
    return {"id": exp.id, "name": exp.name, "url": exp.url, "get_name": exp.get_name(),
            "project_name": exp.project_name, "tags": sorted(exp.get_tags()),
            "key_is_id": exp.get_key() == exp.id}


def run_sdk(out: str, files: str) -> None:
    import comet_ml

    archive_dir = tempfile.mkdtemp()
    exp = comet_ml.OfflineExperiment(project_name="diff", workspace="ws",
                                     offline_directory=archive_dir, **QUIET_SDK)
    said = scenario(exp, files)
    exp.end()
    (zip_name,) = [n for n in os.listdir(archive_dir) if n.endswith(".zip")]
    with zipfile.ZipFile(os.path.join(archive_dir, zip_name)) as zf:
        messages = [json.loads(line) for line in zf.read("messages.json").decode().splitlines()]
        experiment = json.loads(zf.read("experiment.json"))
        contents = {}
        for m in messages:
            p = m["payload"]
            if m["type"] == "file_upload" and p.get("file_path"):
                contents[p["file_path"]] = zf.read(p["file_path"]).decode("latin-1")
    with open(out, "w") as fh:
        json.dump({"messages": messages, "experiment": experiment, "said": said,
                   "contents": contents}, fh)


if __name__ == "__main__":
    run_sdk(sys.argv[1], sys.argv[2])
