"""The typed protocol configs of E3, E4, E5, Table V, the trade-off sweep and the audit: shipped files parse, typos and
out-of-range values fail in one line naming the key, and the dataclass defaults are the shipped values."""

from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable

import pytest

from campro_bench.errors import CamproError
from campro_bench.experiments.audit import AuditConfig
from campro_bench.experiments.e3 import E3Config
from campro_bench.experiments.finetuned import ProtectorRow
from campro_bench.experiments.e4 import E4Config, E4Row
from campro_bench.experiments.spec import GENERAL_KEYS, apply_overrides, load_spec, parse_protocol
from campro_bench.experiments.table5 import Table5Config
from campro_bench.experiments.tradeoff import TradeoffConfig
from campro_bench.experiments.tsne import TsneConfig
from campro_bench.experiments.utility_curve import CurveConfig
from campro_bench.experiments.whitebox import E5Config

PARSERS: dict[str, tuple[type, Callable[[dict[str, Any]], Any]]] = {
    "e3": (E3Config, E3Config.from_spec),
    "e4": (E4Config, E4Config.from_spec),
    "table5": (Table5Config, lambda spec: parse_protocol(Table5Config, spec, "table5")),
    "tradeoff": (TradeoffConfig, TradeoffConfig.from_spec),
    "e5": (E5Config, E5Config.from_spec),
    "utility-curve": (CurveConfig, CurveConfig.from_spec),
    "audit": (AuditConfig, lambda spec: AuditConfig.from_spec({**spec, "protectors": spec["protectors"] or ["invert"]})),
    "tsne": (TsneConfig, lambda spec: parse_protocol(TsneConfig, spec, "tsne")),
}

ROWS_AND_FREE_TABLES = {"protectors", "rows", "methods", "options", "privacy", "columns", "linear", "utility.e3",
                        "utility.e4", "restoration.models", "audits", "whitebox",
                        "utility_from"}
"""Fields whose shipped value is the experiment's content, not a default: the rows and columns (the
TOML is their one source), the factories' own options (checked by the factories: the linear
classifier's), the trade-off's E1 keys (checked by ProtocolConfig) and its audit, E5 and E3 result lists, the
audit's utility tables and the models that score E5's restoration (none by default). Nested ones are named dotted."""


def parse(experiment: str, overrides: list[str] | None = None) -> Any:
    return PARSERS[experiment][1](apply_overrides(load_spec(experiment), overrides or []))


def one_line_error(experiment: str, overrides: list[str]) -> str:
    with pytest.raises(CamproError) as info:
        parse(experiment, overrides)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    return message


@pytest.mark.parametrize("experiment", sorted(PARSERS))
def test_the_shipped_protocol_parses(experiment: str) -> None:
    assert isinstance(parse(experiment), PARSERS[experiment][0])


def _assert_defaults_are_shipped(cls: type, shipped: dict[str, Any], where: str) -> None:
    types = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert set(shipped) <= set(fields), f"{where}: the shipped protocol has keys the config lacks"
    for name, field in fields.items():
        if field.default is None and name not in shipped:
            continue  # "unset" (a seed that follows the protocol's): TOML has no null, the file shows it commented
        assert name in shipped, f"{where}{name} is not in the shipped protocol (it lists every key, commented)"
        if name in ROWS_AND_FREE_TABLES or f"{where}{name}" in ROWS_AND_FREE_TABLES:
            continue
        if dataclasses.is_dataclass(types[name]):
            _assert_defaults_are_shipped(types[name], shipped[name], f"{where}{name}.")
            continue
        default = field.default_factory() if field.default_factory is not dataclasses.MISSING else field.default
        assert default is not dataclasses.MISSING, f"{where}{name} has no default"
        assert default == shipped[name] and type(default) is type(shipped[name]), \
            f"{where}{name}: default {default!r} != shipped {shipped[name]!r}"


@pytest.mark.parametrize("experiment", sorted(PARSERS))
def test_defaults_are_the_shipped_values(experiment: str) -> None:
    shipped = {k: v for k, v in load_spec(experiment).items() if k not in GENERAL_KEYS}
    _assert_defaults_are_shipped(PARSERS[experiment][0], shipped, "")


@pytest.mark.parametrize("experiment, override, key, hint", [
    ("e3", "max_image=3", "max_image", "max_images"),
    ("e3", 'protectors=[{label="Raw", spec="raw", chekpoint="x.pt"}]', "protectors[0].chekpoint",
     "protectors[0].checkpoint"),
    ("e4", "quantise=false", "quantise", "quantize"),
    ("e4", 'rows=[{protector="raw", refrence="raw"}]', "rows[0].refrence", "rows[0].reference"),
    ("table5", "limt=2", "limt", "limit"),
    ("table5", "pose.estimatr=\"x\"", "pose.estimatr", "pose.estimator"),
    ("table5", "caption.batch_sise=2", "caption.batch_sise", "caption.batch_size"),
    ("tradeoff", "utility.finetune_epoch=0", "utility.finetune_epoch", "utility.finetune_epochs"),
    ("tradeoff", 'methods=[{method="Raw", spec="raw", optinal=true}]', "methods[0].optinal", "methods[0].optional"),
    ("e5", "eval_identites=3", "eval_identites", "eval_identities"),
    ("e5", "retrain.train_seed=[1]", "retrain.train_seed", "retrain.train_seeds"),
    ("e5", "restoration.step=1", "restoration.step", "restoration.steps"),
    ("audit", "cheap.gamas=[1.0]", "cheap.gamas", "cheap.gammas"),
    ("audit", "retrain.extracter=\"x\"", "retrain.extracter", "retrain.extractor"),
    ("audit", "utility.psnr_image=3", "utility.psnr_image", "utility.psnr_images"),
])
def test_a_misspelt_key_fails_naming_it(experiment: str, override: str, key: str, hint: str) -> None:
    message = one_line_error(experiment, [override])
    assert message.startswith(f"unknown {experiment} protocol key '{key}' (did you mean '{hint}'?)"), message


@pytest.mark.parametrize("experiment, override, key", [
    ("e3", "batch_size=0", "batch_size"),
    ("e3", "max_images=-1", "max_images"),
    ("e3", "momentum=1.0", "momentum"),
    ("e3", "finetune_epochs=-1", "finetune_epochs"),
    ("e3", 'seed="0"', "seed"),
    ("e4", "limit=-1", "limit"),
    ("e4", 'quantize="yes"', "quantize"),
    ("table5", "limit=-1", "limit"),
    ("table5", "caption.batch_size=0", "caption.batch_size"),
    ("tradeoff", "utility.lr=0", "utility.lr"),
    ("tradeoff", "utility.max_train_images=-5", "utility.max_train_images"),
    ("tradeoff", "seed=-1", "seed"),
    ("e5", "eval_identities=1", "eval_identities"),
    ("e5", "restoration.crop=2", "restoration.crop"),
    ("e5", 'restoration.data="videos"', "restoration.data"),
    ("e5", "retrain.epochs=0", "retrain.epochs"),
    ("audit", "repeats=0", "repeats"),
    ("audit", "confidence=1.5", "confidence"),
    ("audit", "retrain.lr=-1", "retrain.lr"),
    ("audit", "restoration.depth=1", "restoration.depth"),
])
def test_an_out_of_range_or_mistyped_value_fails_naming_the_key(experiment: str, override: str, key: str) -> None:
    assert f"{experiment} protocol key '{key}': input should be" in one_line_error(experiment, [override])


def test_the_trade_off_privacy_keys_are_checked_before_the_run() -> None:
    assert "protocol key 'repeats'" in one_line_error("tradeoff", ["privacy.repeats=0"])


@pytest.mark.parametrize("experiment, override, message", [
    ("e3", "protectors=[]", "the e3 spec lists no protectors"),
    ("e4", "rows=[]", "the e4 spec needs 'rows'"),
    ("e4", 'rows=[{protector="raw", reference="blurred"}]', "reference must be one of raw, face-masked"),
    ("e4", 'rows=[{label="x"}]', "e4 protocol key 'rows[0].protector': field required"),
    ("tradeoff", "methods=[]", "the tradeoff spec lists no methods"),
])
def test_rows_are_checked(experiment: str, override: str, message: str) -> None:
    assert message in one_line_error(experiment, [override])


def test_a_bad_e5_column_names_its_index() -> None:
    message = one_line_error("e5", ['retrain.columns=[{label="a", extractor="facenet-casia", loss="softmax", lrr=1.0}]'])
    assert message.startswith("unknown e5 retrain.columns[0] key 'lrr' (did you mean 'lr'?)"), message


def test_the_audit_rungs_become_e5s_configs() -> None:
    audit = parse("audit", ["seed=3", "restoration.steps=140", "retrain.epochs=1"])
    assert audit.restoration.unet(audit.seed, 450).to_dict() == {  # 450 crops: 28 steps a pass, 5 passes
        "epochs": 5, "batch_size": 16, "crop": 112, "lr": 3e-4, "weight_decay": 1e-2, "hflip": True,
        "face_crop_fraction": 0.0, "quantize": True, "base_channels": 12, "depth": 4, "face_penalty": False, "seed": 3}
    assert parse("audit", ["restoration.seed=7"]).restoration.unet(3, 450).seed == 7
    # the two shipped attacks are the same U-Net and optimiser; only their step budgets differ
    audit_unet, e5_unet = parse("audit").restoration.unet(0, 2775), parse("e5").restoration.unet(0, 2775)
    assert {**audit_unet.to_dict(), "epochs": 0} == {**e5_unet.to_dict(), "epochs": 0}
    assert (parse("audit").restoration.steps, parse("e5").restoration.steps) == (84, 520)
    column = audit.retrain.column()
    assert column["epochs"] == 1 and column["lr"] == 0.01 and "seed" not in column


def test_row_shapes_accepted_today() -> None:
    e3 = parse("e3", ['protectors=["invert", {label="Given P", spec="raw", checkpoint="p.pt"}]'])
    assert e3.protectors == [ProtectorRow("invert", "invert"), ProtectorRow("Given P", "raw", "p.pt")]
    e4 = parse("e4", ['rows=["invert", {protector="raw", reference="face-masked", label="m"}]'])
    assert e4.rows == [E4Row("invert"), E4Row("raw", "face-masked", "m")]


def test_the_fine_tuning_keys_become_the_cached_detectors_config() -> None:
    e3 = parse("e3", ["finetune_epochs=2", "lr=0.01", "seed=4"])
    assert e3.finetune(e3.seed).to_dict() == {"epochs": 2, "batch_size": 8, "lr": 0.01, "momentum": 0.9,
                                              "weight_decay": 4e-5, "hflip": True, "seed": 4}
    # the two shipped protocols agree: the trade-off's utility axis is E3 on coco-person-val (it reads
    # the committed E3 points), one pass over the 545 fine-tune images
    tradeoff, e3_config = parse("tradeoff").utility, parse("e3")
    assert (tradeoff.dataset, tradeoff.train_dataset) == (e3_config.dataset, e3_config.train_dataset)
    assert e3_config.train_dataset == "coco-person-val"
    assert tradeoff.finetune(0) == e3_config.finetune(0) and tradeoff.bootstrap == e3_config.bootstrap


def test_the_restoration_budget_is_steps_whatever_the_models_listed() -> None:
    """E5 used to train 3 passes over the crops of every listed model's alignment: one model got 173
    steps, six models 519. The budget is now steps, rounded to whole passes."""
    rest = parse("e5").restoration
    six, one = rest.budget(2775), rest.budget(925)  # three alignments' crops vs one alignment's
    assert (six["epochs"], six["steps"]) == (3, 519)  # the committed six-model baselines' schedule
    assert (one["epochs"], one["steps"]) == (9, 513)
    assert abs(six["steps"] - one["steps"]) <= 2775 // 16 // 2  # within half a pass of each other
    assert parse("e5", ["restoration.steps=1"]).restoration.epochs_for(925) == 1  # at least one pass
    with pytest.raises(CamproError, match="fewer than one batch"):
        rest.epochs_for(15)


def test_the_audit_restoration_notes_say_the_steps_asked_and_trained() -> None:
    """The audit asks 84 steps; on 600 TRAIN crops (37 batches a pass) the nearest whole number of passes
    is 2, so 74 are trained: the run's notes say both (and the manifest's ``budget``), never 84 alone."""
    rest = parse("audit").restoration
    assert rest.budget(600) == {"steps_asked": 84, "epochs": 2, "steps": 74, "crops": 600}
    assert rest.budget_note(600).startswith("Restoration U-Net: 84 AdamW steps asked, 74 trained (2 whole pass(es)")
    assert rest.budget_note(450) == ("Restoration U-Net: 84 AdamW steps, as asked (3 whole pass(es) of 28 batches "
                                     "of 16 over 450 training crops).")
