"""Trial configuration: frozen dataclasses, YAML loading with validation, flat <-> nested views.

A trial config is what one trial needs, fully resolved: data, RF sampling, front-end, backbone,
training recipe and evaluation. Sweeps produce flat dicts with dotted keys (``rf.strategy``);
`from_flat` turns them back into a validated `TrialConfig`, and `to_flat` gives the MLflow params.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence, overload

import yaml

from v1sweep.config import adversarial as adv
from v1sweep.corruptions import catalog as corruption_catalog
from v1sweep.corruptions.catalog import BENCHMARK_CORRUPTIONS, SEVERITIES
from v1sweep.data import catalog as data_catalog
from v1sweep.errors import ConfigError
from v1sweep.registry import load_plugins
from v1sweep.config.schema import build, deep_merge, flatten, spec, to_dict, unflatten
from v1sweep.rf import catalog as rf_catalog
from v1sweep.trial.backbones import backbone_names


class Names(Sequence[str]):
    """The registered names of a family, read when used: a plugin registered after this module was
    imported (in the user's own file) is a valid choice too. Compares and indexes like a tuple."""

    def __init__(self, names: Callable[[], Sequence[str]]) -> None:
        self._names = names

    def _tuple(self) -> tuple[str, ...]:
        load_plugins()  # installed or V1SWEEP_PLUGINS plugin modules register their entries first
        return tuple(self._names())

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> tuple[str, ...]: ...

    def __getitem__(self, index: int | slice) -> str | tuple[str, ...]:
        return self._tuple()[index]

    def __len__(self) -> int:
        return len(self._tuple())

    def __iter__(self) -> Iterator[str]:
        return iter(self._tuple())

    def __contains__(self, name: object) -> bool:
        return name in self._tuple()

    def __eq__(self, other: object) -> bool:
        return self._tuple() == (tuple(other) if isinstance(other, (Names, list)) else other)

    def __hash__(self) -> int:
        return hash(self._tuple())

    def __repr__(self) -> str:
        return repr(self._tuple())


DATASETS = Names(data_catalog.dataset_names)
STRATEGIES = Names(rf_catalog.strategy_names)
BACKBONES = Names(backbone_names)


@dataclass(frozen=True)
class DataConfig:
    dataset: str = spec("synthetic", choices=DATASETS, doc="dataset registry name")
    path: str | None = spec(None, doc="dataset root (not used by synthetic)")
    image_size: int = spec(64, range=(8, 512), doc="images are resized to this many pixels")
    train_size: int | None = spec(2000, range=(1, None), doc="synthetic: images generated; others: subset (null = all)")
    test_size: int | None = spec(500, range=(1, None), doc="synthetic: images generated; others: subset (null = all)")
    seed: int = spec(0, range=(0, None), doc="synthetic generation / subset seed")
    augment: bool = spec(True, doc="random affine + horizontal flip during training")
    rotation: float = spec(30.0, range=(0, 180), doc="max rotation, degrees")
    translate: float = spec(0.05, range=(0, 0.5), doc="max translation, fraction of the image")
    scale_min: float = spec(1.0, range=(0.1, 4))
    scale_max: float = spec(1.2, range=(0.1, 4))
    hflip: bool = spec(True)
    cache_dir: str | None = spec(None, doc="decoded-tensor cache (default ~/.cache/v1sweep)")

    def validate(self) -> None:
        if data_catalog.needs_path(self.dataset) and not self.path:
            raise ConfigError(f"dataset {self.dataset!r} needs a path; set data.path", key="data.path")
        if self.scale_min > self.scale_max:
            raise ConfigError(f"scale_min {self.scale_min} > scale_max {self.scale_max}", key="data.scale_min")


@dataclass(frozen=True)
class RFConfig:
    strategy: str = spec("biological", choices=STRATEGIES, doc="RF sampling strategy")
    seed: int = spec(0, range=(0, None), doc="Gabor seed, separate from the training seed")
    preset: str = spec(rf_catalog.DEFAULT_PRESET, choices=rf_catalog.PRESETS)
    alpha: float | None = spec(None, range=(0, 1), doc="interpolated: uniform (0) -> biological (1)")
    alpha_sf: float | None = spec(None, range=(0, 1))
    alpha_ori: float | None = spec(None, range=(0, 1))
    alpha_nxny: float | None = spec(None, range=(0, 1))
    alpha_coupling: float | None = spec(None, range=(0, 1))
    mode: str = spec("mixture", choices=rf_catalog.MODES)
    custom_path: str | None = spec(None, doc="custom: histogram file (YAML or CSV)")
    sf_truncation: str = spec("drop", choices=rf_catalog.SF_TRUNCATIONS,
                              doc="frontend.sf_max below the top SF bin edge: drop every bin above it "
                                  "(published) | cut the straddling bin at sf_max")

    def validate(self) -> None:
        for option in rf_catalog.options(self.strategy):
            if option.required and option.config_key and not getattr(self, option.config_key, None):
                raise ConfigError(f"strategy {self.strategy!r} needs rf.{option.config_key}",
                                  key=f"rf.{option.config_key}")

    def sampler_options(self) -> dict[str, Any]:
        """Keyword options for `v1sweep.rf.sample`: the strategy's options (its schema in
        `v1sweep.rf.catalog`) that this config sets."""
        opts: dict[str, Any] = {}
        for option in rf_catalog.options(self.strategy):
            value = getattr(self, option.config_key, None) if option.config_key else None
            if value is not None:
                opts[option.name] = value
        return opts


@dataclass(frozen=True)
class FrontendConfig:
    enabled: bool = spec(True, doc="false = plain backbone baseline without the V1 block")
    n_simple: int = spec(256, range=(0, 4096))
    n_complex: int = spec(256, range=(0, 4096))
    ksize: int = spec(31, range=(3, 127), odd=True)
    stride: int = spec(2, range=(1, 8))
    visual_degrees: float = spec(2.0, range=(0.01, 100), doc="degrees spanned by the image")
    k_exc: float = spec(25.0, range=(0, None))
    sf_max: float = spec(11.5, range=(0.1, None), doc="upper SF support for sampling, cpd")
    noise: str = spec("none", choices=("none", "gaussian", "neuronal"))
    noise_scale: float | None = spec(None, range=(0, None),
                                     doc="null = the rf.preset's value (tinyimagenet2023: 1, vonenet2020: 0.35)")
    noise_level: float | None = spec(None, range=(0, None),
                                     doc="null = the rf.preset's value (tinyimagenet2023: 1, vonenet2020: 0.07)")

    def validate(self) -> None:
        if self.enabled and self.n_simple + self.n_complex == 0:
            raise ConfigError("the V1 block needs at least one channel (n_simple + n_complex > 0)",
                              key="frontend.n_simple")


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = spec("resnet18", choices=BACKBONES)
    bottleneck: int = spec(64, range=(1, 4096), doc="channels of the 1x1 conv after the V1 block")
    bottleneck_norm: str = spec("none", choices=("none", "bn_relu"),
                                doc="none: bare 1x1 conv (published VOneResNet); bn_relu: + BatchNorm + ReLU")
    stem: str = spec("published", choices=("published", "cifar"),
                     doc="plain baseline stem: published (7x7 conv + BN + ReLU + max-pool) | cifar (3x3, no pool)")


@dataclass(frozen=True)
class TrainConfig:
    preset: str | None = spec(None, choices=("study",), doc="named recipe; explicit keys override it")
    epochs: int = spec(60, range=(0, 10000))
    batch_size: int = spec(128, range=(1, 65536))
    lr: float = spec(0.1, range=(0, 10))
    momentum: float = spec(0.9, range=(0, 1))
    weight_decay: float = spec(5e-4, range=(0, 1))
    schedule: str = spec("plateau", choices=("plateau", "step", "cosine", "constant"))
    plateau_metric: str = spec("val_loss", choices=("val_loss", "val_acc"),
                               doc="plateau: watched metric, val_loss (mode min, the study) | val_acc (mode max)")
    plateau_factor: float = spec(0.1, range=(0, 1))
    plateau_patience: int = spec(5, range=(0, None))
    plateau_threshold: float = spec(0.01, range=(0, 1), doc="plateau: relative improvement that counts")
    step_size: int = spec(20, range=(1, None))
    step_gamma: float = spec(0.1, range=(0, 1))
    seed: int = spec(0, range=(0, None), doc="weights and data order (separate from rf.seed)")
    device: str = spec("auto", doc="auto | cpu | cuda | cuda:N")
    amp: bool = spec(True, doc="bf16 autocast on CUDA")
    channels_last: bool = spec(True, doc="channels_last memory format on CUDA")
    max_batches: int | None = spec(None, range=(1, None), doc="cap batches per epoch (smoke runs, benches)")
    checkpoint: bool = spec(True, doc="save a checkpoint each epoch and resume from it")

    def validate(self) -> None:
        if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", self.device):
            raise ConfigError(f"{self.device!r} is not allowed; allowed: auto, cpu, cuda, cuda:N",
                              key="train.device")


@dataclass(frozen=True)
class AttackConfig:
    """One white-box PGD attack of `eval.adversarial` (docs/adversarial.md)."""
    norm: str = spec("linf", choices=adv.NORMS, doc="threat model: linf | l2")
    eps: float | None = spec(None, range=(0, None),
                             doc="radius in [0, 1] pixel units before normalisation (linf <= 1; l2 <= sqrt(3 H W))")
    steps: int = spec(adv.DEFAULT_STEPS, range=(0, 100000), doc="PGD iterations (published: 64)")
    step_size: float | None = spec(None, range=(0, None), doc="null = 2.5 * eps / steps (Madry et al. 2018)")
    eot: int | None = spec(None, range=(1, 1000),
                           doc="noise samples averaged per gradient; null = 8 with frontend.noise, else 1")
    restarts: int = spec(1, range=(1, 1000), doc="random restarts; an image counts as robust only if it survives all")
    random_start: bool = spec(True, doc="start each restart at a uniform random point of the eps ball")
    images: int | None = spec(None, range=(1, None),
                              doc="test images attacked, a fixed subset drawn with eval.seed (same for every "
                                  "trial); null = min(1000, the test set)")

    @property
    def metric(self) -> str:
        return adv.metric_name(self.norm, self.eps or 0.0)


def _expand_attacks(value: Any) -> Any:
    """``eval.adversarial: default`` -> the published attack list; null -> none (off)."""
    if value is None:
        return []
    if isinstance(value, str) and value == "default":
        return [dict(a) for a in adv.DEFAULT_ATTACKS]
    if isinstance(value, str):
        raise ConfigError(f"{value!r} is not allowed; allowed: default, null, or a list of attacks "
                          "({norm, eps, steps, step_size, eot, restarts, random_start, images})",
                          key="eval.adversarial")
    return value


@dataclass(frozen=True)
class EvalConfig:
    corruptions: tuple[str, ...] = spec(BENCHMARK_CORRUPTIONS, choices=Names(corruption_catalog.registered))
    severities: tuple[int, ...] = spec(SEVERITIES, range=(1, 5))
    source: str = spec("generated", choices=("generated", "published"))
    path: str | None = spec(None, doc="published: CIFAR-10-C or Tiny-ImageNet-C folder")
    max_images: int | None = spec(None, range=(1, None), doc="test images used for corruption accuracy")
    seed: int = spec(0, range=(0, None), doc="corruption randomness; the same for every trial")
    cache_dir: str | None = spec(None, doc="materialized corrupted sets (default ~/.cache/v1sweep)")
    batch_size: int = spec(500, range=(1, None))
    frost: str = spec("published", choices=("published", "procedural"),
                      doc="generated frost: the published photographs, or procedural textures")
    storage: str = spec("published", choices=("published", "lossless"),
                        doc="generated sets stored as published (uint8 truncation; 64 px: + JPEG q85) or rounded")
    adversarial: tuple[AttackConfig, ...] = spec((), doc="white-box PGD attacks (off by default; `default` = "
                                                         "the published four; docs/adversarial.md)")
    adversarial_per_epoch: bool = spec(False, doc="also attack after every epoch (per-epoch metrics "
                                                  "val_adv_acc/<norm>/<eps>; costly, off by default)")

    def validate(self) -> None:
        if self.source == "published" and not self.path:
            raise ConfigError("source 'published' needs eval.path", key="eval.path")
        seen: dict[str, int] = {}
        for i, attack in enumerate(self.adversarial):
            key = f"eval.adversarial[{i}]"
            if attack.eps is None:
                raise ConfigError("eps is required (radius in [0, 1] pixel units, e.g. 0.00098 = 1/1020)",
                                  key=f"{key}.eps")
            if attack.norm == "linf" and attack.eps > 1:
                raise ConfigError(f"{attack.eps!r} is out of range; allowed: [0, 1] (pixel units before "
                                  "normalisation: 1/255 = 0.00392)", key=f"{key}.eps")
            if 0 < attack.eps < 10 ** -adv.EPS_DECIMALS:
                raise ConfigError(f"{attack.eps!r} is out of range; allowed: 0 or >= 1e-05 (the metric name "
                                  f"keeps {adv.EPS_DECIMALS} decimals)", key=f"{key}.eps")
            if attack.metric in seen:
                raise ConfigError(f"attacks {seen[attack.metric]} and {i} would both log {attack.metric!r}; "
                                  "metrics are named by norm and eps, so give each attack its own (norm, eps)",
                                  key=key)
            seen[attack.metric] = i


@dataclass(frozen=True)
class TrialConfig:
    name: str = spec("trial")
    data: DataConfig = spec(default_factory=DataConfig)
    rf: RFConfig = spec(default_factory=RFConfig)
    frontend: FrontendConfig = spec(default_factory=FrontendConfig)
    model: ModelConfig = spec(default_factory=ModelConfig)
    train: TrainConfig = spec(default_factory=TrainConfig)
    eval: EvalConfig = spec(default_factory=EvalConfig)

    def validate(self) -> None:
        self._validate_attacks()
        fe = self.frontend
        if fe.enabled:
            ppd = self.data.image_size / fe.visual_degrees
            if fe.sf_max > ppd / 2:
                raise ConfigError(
                    f"sf_max {fe.sf_max} cpd is above the Nyquist frequency {ppd / 2:g} cpd of "
                    f"{self.data.image_size} px over {fe.visual_degrees} deg; lower frontend.sf_max or set "
                    f"frontend.visual_degrees <= {self.data.image_size / (2 * fe.sf_max):.3g}",
                    key="frontend.sf_max")

    def _validate_attacks(self) -> None:
        """Checks that need other sections: the L2 radius against the image size, the attacked images
        against the test set size (a cap for datasets on disk, checked again once loaded)."""
        limit = adv.l2_eps_max(self.data.image_size)
        tests = self.data.test_size
        for i, attack in enumerate(self.eval.adversarial):
            if attack.norm == "l2" and attack.eps is not None and attack.eps > limit:
                raise ConfigError(f"{attack.eps!r} is out of range; allowed: [0, {limit:.4g}] (sqrt(3 H W) at "
                                  f"{self.data.image_size} px)", key=f"eval.adversarial[{i}].eps")
            if tests is not None and attack.images is not None and attack.images > tests:
                raise ConfigError(f"{attack.images} images but the test set has {tests} (data.test_size); "
                                  f"allowed: [1, {tests}]", key=f"eval.adversarial[{i}].images")

    @property
    def stochastic(self) -> bool:
        """Whether the V1 block draws noise (then attacks average gradients over EOT samples)."""
        return self.frontend.enabled and self.frontend.noise != "none"

    @property
    def noise_params(self) -> tuple[float, float]:
        """(noise_scale, noise_level) of the V1 block: the explicit values, else `NOISE_PRESETS` of rf.preset."""
        scale, level = NOISE_PRESETS[self.rf.preset]
        fe = self.frontend
        return (scale if fe.noise_scale is None else fe.noise_scale,
                level if fe.noise_level is None else fe.noise_level)

    @property
    def num_classes(self) -> int | None:
        """Known where the dataset's metadata gives it (synthetic, CIFAR-10, Tiny ImageNet); others tell once loaded."""
        return data_catalog.num_classes(self.data.dataset)


TRAIN_PRESETS: dict[str, dict[str, Any]] = {
    # Barbulescu, Marques & Oliveira 2023: 60 epochs, batch 128, SGD lr 0.1, momentum 0.9,
    # weight decay 5e-4, ReduceLROnPlateau stepped once per epoch on the validation loss
    # (mode min, factor 0.1, patience 5, threshold 0.01 relative).
    "study": {"epochs": 60, "batch_size": 128, "lr": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
              "schedule": "plateau", "plateau_metric": "val_loss", "plateau_factor": 0.1,
              "plateau_patience": 5, "plateau_threshold": 0.01},
}

# V1-block noise (scale, level) when frontend.noise_scale / noise_level are null, per rf.preset:
# the 2023 study's code runs its noise at scale 1, level 1; the 2020 VOneNet at 0.35, 0.07.
NOISE_PRESETS: dict[str, tuple[float, float]] = {"tinyimagenet2023": (1.0, 1.0), "vonenet2020": (0.35, 0.07)}


def _apply_presets(tree: Mapping[str, Any]) -> Any:
    if not isinstance(tree, Mapping):
        return tree  # `build` reports what it got instead of a mapping
    tree = dict(tree)
    ev = tree.get("eval")
    if isinstance(ev, Mapping) and "adversarial" in ev:
        tree["eval"] = {**ev, "adversarial": _expand_attacks(ev["adversarial"])}
    train = tree.get("train")
    if isinstance(train, Mapping) and train.get("preset") in TRAIN_PRESETS:
        tree["train"] = {**TRAIN_PRESETS[train["preset"]], **train}
    return tree


def from_dict(tree: Mapping[str, Any], *, file: str | None = None) -> TrialConfig:
    """Validate a nested dict into a `TrialConfig`."""
    try:
        tree = _apply_presets(tree)
    except ConfigError as exc:
        raise ConfigError(str(exc).split(": ", 1)[-1], file=file, key=exc.key) from None
    return build(TrialConfig, tree, file=file)


def from_flat(flat: Mapping[str, Any], *, file: str | None = None) -> TrialConfig:
    """Validate a flat dotted-key dict (a sweep's trial params) into a `TrialConfig`."""
    return from_dict(unflatten(flat), file=file)


def to_tree(config: TrialConfig) -> dict[str, Any]:
    return to_dict(config)


def to_flat(config: TrialConfig) -> dict[str, Any]:
    """Dotted keys -> values; the MLflow params of a trial."""
    return flatten(to_dict(config))


def to_yaml(config: TrialConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)


class _SafeLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` (no Python tags, nothing evaluated) that also refuses duplicate keys and
    reads exponent floats without a dot (``1e-3``, as YAML 1.2 does; YAML 1.1 makes them strings)."""


def _no_duplicate_keys(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key: let construct_mapping report it
            break
        if duplicate:
            raise yaml.constructor.ConstructorError(
                "while reading a mapping", node.start_mark,
                f"duplicate key {key!r} (a later value would silently replace an earlier one)",
                key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_SafeLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _no_duplicate_keys)
_SafeLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"))


def safe_load(text: str) -> Any:
    """Parse YAML text with `_SafeLoader` (plain data only; never constructs Python objects)."""
    loader = _SafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def read_yaml(path: str | Path) -> Any:
    """Safely load a YAML file (`safe_load`); a syntax error names the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("file not found", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not a UTF-8 text file (byte {exc.start}); expected a YAML config",
                          file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None
    try:
        return safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"malformed YAML{where}: {problem}", file=str(path)) from None


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """`["train.epochs=3", "rf.strategy=unif2"]` -> flat dict; values parsed as YAML scalars."""
    flat: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            flat[key.strip()] = safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            flat[key.strip()] = raw
    return flat


def load(path: str | Path, overrides: Sequence[str] | Mapping[str, Any] = ()) -> TrialConfig:
    """Load a trial config YAML, apply `--set` overrides, validate."""
    tree = read_yaml(path)
    if tree is None:
        tree = {}
    if not isinstance(tree, Mapping):
        sections = ", ".join(f.name for f in dataclasses.fields(TrialConfig))
        raise ConfigError(f"a trial config must be a mapping of sections ({sections}), got a "
                          f"{type(tree).__name__}", file=str(path))
    flat = overrides if isinstance(overrides, Mapping) else parse_overrides(overrides)
    tree = deep_merge(tree, unflatten(flat))
    return from_dict(tree, file=str(path))


def replace(config: TrialConfig, **flat_changes: Any) -> TrialConfig:
    """A validated variant: `replace(cfg, **{"rf.strategy": "unif2"})`."""
    return from_flat({**to_flat(config), **flat_changes})


def field_docs(cls: type = TrialConfig, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted key, default, doc) for every field; used to document configs."""
    rows = []
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(f.type) or (isinstance(f.type, str) and f.type.endswith("Config")):
            sub = {"data": DataConfig, "rf": RFConfig, "frontend": FrontendConfig, "model": ModelConfig,
                   "train": TrainConfig, "eval": EvalConfig}[f.name]
            rows.extend(field_docs(sub, f"{prefix}{f.name}."))
        else:
            default = f.default if f.default is not dataclasses.MISSING else None
            rows.append((f"{prefix}{f.name}", default, f.metadata.get("doc", "")))
    return rows
