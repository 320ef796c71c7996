"""The framework integrations, each with the real framework training a tiny model on CPU for
a few steps; the journal is read back afterwards. A missing framework skips its test with the
reason (``pip install -e .[integrations-test]`` installs them)."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import pytest

from journal_helpers import rows

QUIET = dict(log_code=False, log_git_metadata=False, log_git_patch=False, log_env_details=False,
             auto_output_logging=None, system_monitor_interval=None, keep_alive_interval=None)
HINT = "not installed (pip install -e .[integrations-test])"


def _need(module: str):
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{module} {HINT}: {exc}")


def _metrics(journal) -> list[dict]:
    return [r["payload"] for r in rows(journal, "log_metric")]


def _params(journal) -> dict:
    return {r["payload"]["parameterName"]: r["payload"]["parameterValue"]
            for r in rows(journal, "log_parameter")}


def test_modules_import_their_framework_lazily():
    """In a fresh interpreter (this one may hold frameworks other tests imported)."""
    code = ("import sys, comet_journal, comet_journal.integrations; "
            "print(sorted({'torch','lightning','transformers','keras'} & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "[]"


def test_lightning_logger(tmp_path):
    torch = _need("torch")
    pl = _need("lightning.pytorch")
    from comet_journal.integrations.lightning import CometJournalLogger

    class Tiny(pl.LightningModule):
        def __init__(self, lr=0.05, opt=None):
            super().__init__()
            self.save_hyperparameters()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch, _):
            x, y = batch
            loss = torch.nn.functional.mse_loss(self.layer(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, _):
            x, y = batch
            self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    data = torch.utils.data.TensorDataset(torch.randn(32, 4), torch.randn(32, 1))
    loader = torch.utils.data.DataLoader(data, batch_size=8)
    journal = str(tmp_path / "run.db")
    logger = CometJournalLogger(journal=journal, project_name="lit", **QUIET)
    trainer = pl.Trainer(max_epochs=2, logger=logger, log_every_n_steps=1, accelerator="cpu",
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, default_root_dir=str(tmp_path))
    trainer.fit(Tiny(opt={"name": "sgd", "momentum": 0.0}), loader, loader)
    assert logger.version == logger.experiment.key
    logger.experiment.end()
    params = _params(journal)
    assert params["lr"] == 0.05 and params["opt/name"] == "sgd"
    train = [m for m in _metrics(journal) if m["metricName"] == "train_loss"]
    assert [m["step"] for m in train] == list(range(8))  # 4 batches x 2 epochs
    assert {m.get("epoch", 0) for m in train} == {0, 1}
    assert any(m["metricName"] == "val_loss" for m in _metrics(journal))


def test_huggingface_callback(tmp_path):
    _need("torch")
    transformers = _need("transformers")
    _need("accelerate")
    from comet_journal.integrations.huggingface import CometJournalCallback

    config = transformers.BertConfig(vocab_size=32, hidden_size=8, num_hidden_layers=1,
                                     num_attention_heads=1, intermediate_size=8,
                                     max_position_embeddings=16, num_labels=2)
    transformers.set_seed(0)
    model = transformers.BertForSequenceClassification(config)
    data = [{"input_ids": [1 + i % 7, 2, 3, 4], "labels": i % 2} for i in range(16)]
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), max_steps=4, per_device_train_batch_size=4,
        logging_steps=1, eval_strategy="steps", eval_steps=2, save_strategy="no",
        report_to="none", use_cpu=True, disable_tqdm=True)
    journal = str(tmp_path / "run.db")
    callback = CometJournalCallback(journal=journal, project_name="hf", **QUIET)
    trainer = transformers.Trainer(model=model, args=args, train_dataset=data,
                                   eval_dataset=data[:4], callbacks=[callback])
    trainer.train()
    callback.experiment.end()
    params = _params(journal)
    assert params["args/max_steps"] == 4 and params["config/hidden_size"] == 8
    assert params["args/hub_token"] in ("None", "<HUB_TOKEN>")  # None journaled as text
    metrics = _metrics(journal)
    losses = [m for m in metrics if m["metricName"] == "loss"]
    assert [m["step"] for m in losses] == [1, 2, 3, 4]
    assert [m["step"] for m in metrics if m["metricName"] == "eval_loss"] == [2, 4]


def test_keras_callback(tmp_path):
    os.environ.setdefault("KERAS_BACKEND", "torch")
    _need("torch")
    keras = _need("keras")
    numpy = _need("numpy")
    from comet_journal.integrations.keras import CometJournalCallback

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer="sgd", loss="mse")
    x = numpy.random.rand(32, 4).astype("float32")
    y = numpy.random.rand(32, 1).astype("float32")
    journal = str(tmp_path / "run.db")
    callback = CometJournalCallback(journal=journal, project_name="keras", **QUIET)
    model.fit(x, y, epochs=2, batch_size=8, validation_split=0.25, callbacks=[callback],
              verbose=0)
    callback.experiment.end()
    assert _params(journal) == {"epochs": 2, "steps": 3}
    metrics = _metrics(journal)
    batch = [m for m in metrics if m["metricName"] == "batch_loss"]
    assert [m["step"] for m in batch] == [1, 2, 3, 4, 5, 6]
    epochs = [(m["step"], m.get("epoch", 0)) for m in metrics if m["metricName"] == "val_loss"]
    assert epochs == [(3, 0), (6, 1)]
