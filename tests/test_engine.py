"""The engine's contract: recipes with many networks, class-restricted streams, phases, typed per-network
optimizers and non-image outputs train through ``tailgan train`` and resume bit for bit."""


import pytest
import torch
import toy_recipes
from helpers import assert_same, read_log
from helpers import run_state as state

from tailgan.cli import main as cli
from tailgan.data import load_data
from tailgan.engine import Callback, DataShape, RunContext, Trainer, build_method, load_generator, make_config
from tailgan.errors import TailganError
from tailgan.io import load_checkpoint
from tailgan.methods import register_method, unregister_method


@pytest.fixture(autouse=True)
def toy_recipes_registered():
    """The toy recipes are in the registry for these tests only (other files list every real recipe)."""
    register_method("toy-translate", "toy_recipes", "ToyTranslate")
    register_method("toy-feature", "toy_recipes", "ToyFeature")
    yield
    unregister_method("toy-translate")
    unregister_method("toy-feature")

SMALL = ["precision=fp32", "optim.batch_size=4", "log_every=1", "ckpt_every=1", "sample_every=2",
         "data.resolution=8", "data.fit=resize"]  # fmt: skip


def run_cli(*args):
    assert cli([str(a) for a in args]) == 0


def test_four_networks_two_streams_and_a_classifier_phase_resume_bit_exact(tmp_path):
    straight, killed, split = tmp_path / "straight", tmp_path / "killed", tmp_path / "split"
    train = ["train", "--method", "toy-translate", "--data", "digits_lt", *SMALL]
    run_cli(*train, "--steps", 4, "--out", straight)

    # N + resume + N inside the main (classifier) phase
    run_cli(*train, "--steps", 2, "--out", split)
    run_cli("train", "--resume", split, "--steps", 4)
    assert_same(state(straight), state(split))

    # a crash inside the first phase, then resume: continues inside that phase
    toy_recipes.CRASH_AT["translate"] = 3
    try:
        assert cli([*train, "--steps", "4", "--out", str(killed)]) == 130  # interrupted
    finally:
        toy_recipes.CRASH_AT.clear()
    mid = load_checkpoint(killed / "checkpoints" / "last.pt")
    assert mid["phase"] == "translate" and mid["step"] == 2
    run_cli("train", "--resume", killed, "--steps", 4)
    assert_same(state(straight), state(killed))

    records = read_log(straight)
    assert [(r["phase"], r["step"]) for r in records] == [("translate", s) for s in (1, 2, 3)] + [
        ("classifier", s) for s in (1, 2, 3, 4)
    ]
    # per-network optimizer settings are typed, resolved and written to config.yaml
    cfg = (straight / "config.yaml").read_text()
    assert "cls_optim:" in cfg and "name: sgd" in cfg and "momentum: 0.9" in cfg
    ckpt = load_checkpoint(straight / "checkpoints" / "last.pt")
    assert type_of(ckpt, "C") == "SGD" and type_of(ckpt, "G") == "Adam"
    assert set(ckpt["method"]["nets"]) == {"G_AB", "G_BA", "D_A", "D_B", "C"}


def type_of(ckpt, optimizer):
    groups = ckpt["method"]["optimizers"][optimizer]["param_groups"][0]
    return "SGD" if "nesterov" in groups else "Adam"


def test_streams_are_restricted_to_their_classes():
    cfg = make_config("toy-translate", data="digits_lt", overrides=[*SMALL, "options.class_a=3", "options.class_b=7"])
    data = load_data(cfg.data)
    m = build_method(cfg, DataShape(10, 1, 8, tuple(data.train.counts())), RunContext())
    trainer = Trainer(m, data)
    for _ in range(5):
        (_, ya), (_, yb) = trainer.batches.next("domain_a"), trainer.batches.next("domain_b")
        assert set(ya.tolist()) == {3} and set(yb.tolist()) == {7}
    with pytest.raises(KeyError, match="domain_a, domain_b"):
        trainer.batches.next("real")


def test_unknown_typed_option_is_named_before_data_loads():
    with pytest.raises(TailganError, match="options.cls_optim.momentun"):
        make_config("toy-translate", overrides=["options.cls_optim.momentun=0.5"])
    with pytest.raises(TailganError, match="options.cls_optim.name"):
        make_config("toy-translate", overrides=["options.cls_optim.name=rmsprop"])


def test_translating_recipe_samples_from_a_source_batch(tmp_path):
    run = tmp_path / "run"
    run_cli("train", "--method", "toy-translate", "--data", "digits_lt", *SMALL, "--steps", 1, "--out", run)
    g = load_generator(run)
    assert g.output.translates
    with pytest.raises(TailganError, match="translates images"):
        g.sample(torch.tensor([1, 1]))
    src = torch.zeros(2, 1, 8, 8)
    out = g.sample(torch.tensor([0, 1]), source=src)
    assert out.shape == (2, 1, 8, 8)
    assert torch.allclose(out[1], g.method.nets["G_AB"](src[1:]).squeeze(0), atol=1e-6)


def test_feature_output_trains_and_sample_refuses_it(tmp_path, capsys):
    run = tmp_path / "feat"
    run_cli("train", "--method", "toy-feature", "--data", "digits_lt", "--steps", 3, "--out", run,
            "optim.batch_size=4", "log_every=1", "ckpt_every=3", "sample_every=1")  # fmt: skip
    assert not (run / "samples").exists()  # no image grid for feature maps
    g = load_generator(run)
    assert g.output.kind == "feature" and g.sample(torch.tensor([0, 9]), seed=0).shape == (2, 6, 14, 14)
    assert cli(["sample", str(run), "--class", "1", "--n", "4", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "feature maps (6x14x14)" in err and "not images" in err and not (tmp_path / "s").exists()


class Count(Callback):
    def __init__(self):
        self.events = []

    def on_step(self, trainer, event):
        self.events.append((event.phase.name, event.step, event.last))


def test_trainer_steps_one_at_a_time():
    cfg = make_config("toy-translate", data="digits_lt", overrides=SMALL, steps=2)
    data = load_data(cfg.data)
    m = build_method(cfg, DataShape(10, 1, 8, tuple(data.train.counts())), RunContext())
    seen = Count()
    trainer = Trainer(m, data, callbacks=[seen])
    losses = trainer.step()
    assert set(losses) == {"d_loss", "g_loss"} and all(v.dim() == 0 for v in losses.values())
    trainer.run()
    assert seen.events == [("translate", 1, False), ("translate", 2, False), ("translate", 3, True),
                           ("classifier", 1, False), ("classifier", 2, True)]  # fmt: skip
    assert trainer.done and trainer.remaining_steps() == 0
    with pytest.raises(TailganError, match="finished"):
        trainer.step()


class Adds(Callback):
    """Adds ``{key: step}`` to the record at every ``every``-th step and keeps the finished records."""

    def __init__(self, key, every):
        self.key, self.every, self.seen = key, every, []

    def on_step(self, trainer, event):
        assert isinstance(event.record, dict) or not event.record  # the trainer's averages, before any callback
        return {self.key: event.step} if event.step % self.every == 0 else None

    def after_step(self, trainer, event):
        self.seen.append(dict(event.record))


@pytest.mark.parametrize("order", [0, 1])
def test_callbacks_return_their_record_fields_in_any_order(order):
    """Each callback returns what it adds to the log record; every callback then sees the same finished record
    whatever their order, a step that logs nothing gets a record naming its phase and step, and two callbacks
    setting one field is an error."""
    cfg = make_config("toy-translate", data="digits_lt", overrides=[*SMALL, "log_every=2"], steps=2)
    data = load_data(cfg.data)
    a, b = Adds("a", 1), Adds("b", 2)
    trainer = Trainer(build_method(cfg, DataShape(10, 1, 8, tuple(data.train.counts())), RunContext()), data,
                      callbacks=[a, b] if order == 0 else [b, a])  # fmt: skip
    trainer.step(), trainer.step()
    assert a.seen == b.seen
    assert a.seen[0] == {"phase": "translate", "step": 1, "a": 1}  # not a logging step: only a's field
    assert a.seen[1]["a"] == 2 and a.seen[1]["b"] == 2 and "d_loss" in a.seen[1] and "steps_per_s" in a.seen[1]

    class Mutates(Callback):
        def after_step(self, trainer, event):
            event.record["x"] = 1  # the finished record is read-only: no callback changes what the next one sees

    trainer.callbacks = [Mutates()]
    with pytest.raises(TypeError):
        trainer.step()
    trainer.callbacks = [Adds("a", 1), Adds("a", 1)]
    with pytest.raises(TailganError, match="both set the log field 'a'"):
        trainer.step()


@pytest.mark.parametrize(
    "preset, expect",
    [
        ("ecogan-dcgan", {"loss.gp_alpha": "normal", "loss.gather_grad": "local", "data.resolution": 64}),
        ("ecogan-biggan", {"model.shortcut_after_relu": True, "loss.gather_grad": "local"}),
        ("bagan-gp", {"loss.gp_alpha": "normal", "options.wrong_labels": "any"}),
        ("ebgan", {"loss.gp_alpha": "normal", "options.wrong_labels": "any"}),
        ("bagan", {"options.fake_batch": "b", "options.pretrain_decoder_only": True}),
    ],
)
def test_faithful_switch_turns_every_original_behaviour_on(preset, expect):
    from tailgan.config import to_dict

    def get(cfg, key):
        node = to_dict(cfg)
        for part in key.split("."):
            node = node[part]
        return node

    default, faithful = make_config(preset), make_config(preset, overrides=["faithful=true"])
    assert faithful.faithful and not default.faithful
    for key, value in expect.items():
        assert get(faithful, key) == value and get(default, key) != value, key
    # an explicit setting still wins over the switch
    assert make_config(preset, overrides=["faithful=true", "loss.gp_alpha=uniform"]).loss.gp_alpha == "uniform"


def test_faithful_switch_on_a_recipe_without_original_code_is_an_error():
    with pytest.raises(TailganError, match="no original-behaviour options"):
        make_config("idagan", overrides=["faithful=true"])


def test_faithful_biggan_discriminator_reads_relu_x_in_its_shortcut(tmp_path):
    cfg = make_config("ecogan-biggan", overrides=["faithful=true", "model.conv_dim=8", "model.shared_dim=8"])
    m = build_method(cfg, DataShape(10, 1, 32, (10,) * 10), RunContext())
    blocks = [b for b in m.nets["D"].modules() if hasattr(b, "shortcut_after_relu")]
    assert blocks and all(b.shortcut_after_relu for b in blocks)
