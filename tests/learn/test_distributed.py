import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from xloc.cli import app
from xloc.learn import distributed, maml

runner = CliRunner()


def maml_ts_train_command(tmp_path) -> list[str]:
    """``xloc train`` arguments for a small MAML-TS run on two simulated path-loss families (written here)."""
    data = tmp_path / "pl.h5"
    assert runner.invoke(app, ["simulate", "-o", str(data), "--family", "a", "--family", "c",
                               "--test-points", "10"]).exit_code == 0
    return ["train", "--data", str(data), "--method", "maml-ts", "--iterations", "12", "--seed", "4"]


def engine_weight_difference(folder_a, folder_b) -> float:
    """Largest absolute difference between two trained estimators' engine weights (same keys, at least one)."""
    a = load_file(str(folder_a / "engine" / "weights.safetensors"))
    b = load_file(str(folder_b / "engine" / "weights.safetensors"))
    assert a.keys() == b.keys() and len(a) > 0
    return max((a[k] - b[k]).abs().max().item() for k in a)


def test_outside_a_process_group_nothing_is_split():
    batch = maml.TaskBatch(*(torch.randn(6, 3, 2) for _ in range(4)))
    part, weight = distributed.shard(batch)
    assert part is batch and weight == 1.0 and distributed.world() == (0, 1) and distributed.is_main()
    grads = {"w": torch.ones(3)}
    assert distributed.reduce_gradients(grads, 0.5, 1.0) == (grads, 0.5)


def test_two_gloo_ranks_match_the_single_process_run(tmp_path):
    common = maml_ts_train_command(tmp_path)
    data = tmp_path / "pl.h5"
    single = runner.invoke(app, [*common, "-o", str(tmp_path / "single")])
    assert single.exit_code == 0, single.output
    ddp = runner.invoke(app, [*common, "--nproc", "2", "-o", str(tmp_path / "ddp")])
    assert ddp.exit_code == 0, ddp.output
    # a trained estimator's folder keeps the engine's weights in engine/
    assert engine_weight_difference(tmp_path / "single", tmp_path / "ddp") < 1e-5
    refused = runner.invoke(app, ["train", "--data", str(data), "--method", "maml-dg", "--nproc", "2", "-o",
                                  str(tmp_path / "x")])
    assert refused.exit_code != 0 and "not split" in refused.output


def test_two_gloo_ranks_train_alloc_like_one_process(tmp_path):
    data = tmp_path / "o1.h5"
    assert runner.invoke(app, ["simulate", "--scenario", "o1", "--users", "150", "--test-users", "5", "-o",
                               str(data)]).exit_code == 0
    common = ["train", "--data", str(data), "--method", "alloc", "--iterations", "4", "--seed", "1"]
    assert runner.invoke(app, [*common, "-o", str(tmp_path / "one")]).exit_code == 0
    two = runner.invoke(app, [*common, "--nproc", "2", "-o", str(tmp_path / "two")])
    assert two.exit_code == 0, two.output
    a = load_file(str(tmp_path / "one" / "engine" / "weights.safetensors"))
    b = load_file(str(tmp_path / "two" / "engine" / "weights.safetensors"))
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def test_two_gloo_ranks_pretrain_lwlm_like_one_process(tmp_path):
    data = tmp_path / "city.h5"
    assert runner.invoke(app, ["simulate", "--scenario", "city", "--users", "64", "--test-users", "4", "-o",
                               str(data)]).exit_code == 0
    common = ["pretrain", "--data", str(data), "--env", "city-A-cond1", "--epochs", "2", "--seed", "1"]
    one = runner.invoke(app, [*common, "-o", str(tmp_path / "one")])
    two = runner.invoke(app, [*common, "--nproc", "2", "-o", str(tmp_path / "two")])
    assert one.exit_code == 0 and two.exit_code == 0, two.output
    a = load_file(str(tmp_path / "one" / "weights.safetensors"))
    b = load_file(str(tmp_path / "two" / "weights.safetensors"))
    # PICL's negatives are gathered from both ranks, masks and augmentations drawn for the whole batch: the same
    # training up to float round-off (Adam's first steps amplify it a little).
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-3
