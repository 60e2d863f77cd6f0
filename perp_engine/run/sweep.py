"""Sweeps: a grid of RunConfig field values, expanded into one run per combination and queued on an executor.

A sweep file (YAML, or JSON when it ends in .json)::

    name: sparsity-vs-method          # optional
    base:                             # optional: fields every run shares
      model: smollm2-135m
      steps: 20
    grid:                             # field: values; one run per combination (first field varies slowest)
      sparsity: [0.3, 0.5, 0.7]
      method: [magnitude, wanda]
      preset: [none, perp]

For the list fields (``train``, ``target_modules``) each value is a list or a comma string:
``train: [norms, "norms,biases"]`` is two points. On the command line, ``--sparsity 0.3,0.5`` gives two
values and ``+`` joins the items of one list value: ``--train norms,norms+biases``.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..config import RunConfig, field_values, zero_shot_limit_value
from ..errors import PerpError

FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
FILE_KEYS = ("name", "base", "grid")
MAX_POINTS = 1000
_TRUE, _FALSE = {"true", "yes", "on", "1"}, {"false", "no", "off", "0"}


@dataclass
class SweepSpec:
    """A grid (field -> values, in order) plus base fields shared by every point."""

    grid: dict[str, list]
    base: dict = field(default_factory=dict)
    name: str = ""

    def __post_init__(self):
        for where, names in (("grid", self.grid), ("base", self.base)):
            unknown = sorted(str(name) for name in names if name not in FIELDS)
            if unknown:
                raise PerpError("sweep", f"unknown field(s) {', '.join(unknown)} in {where}; allowed: {', '.join(FIELDS)}")
        both = sorted(set(self.grid) & set(self.base))
        if both:
            raise PerpError("sweep", f"{', '.join(both)} both in base and in grid; keep each field in one of them")
        for name, values in self.grid.items():
            if not isinstance(values, list) or not values:
                raise PerpError("sweep", f"grid field {name} needs a non-empty list of values, got {values!r}")
        field_values(self.base)  # a value of the wrong type (or null) is a typo in every point: say so now
        for name, values in self.grid.items():
            for value in values:
                field_values({name: value})
        if not self.grid and not self.base:
            raise PerpError("sweep", "the grid is empty; give grid: {field: [values]} or flags such as --sparsity 0.3,0.5")
        if not self.name:
            self.name = " x ".join(f"{k} {len(v)}" for k, v in self.grid.items()) or "single run"

    @property
    def size(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n

    def points(self) -> list[dict]:
        """Every combination of grid values, first grid field varying slowest."""
        names = list(self.grid)
        return [dict(zip(names, combo)) for combo in itertools.product(*self.grid.values())]

    def configs(self, skip_invalid: bool = False, max_points: int = MAX_POINTS,
                check: Callable[[RunConfig], object] | None = None) -> tuple[list[RunConfig], list[tuple[dict, str]]]:
        """One validated RunConfig per point, and the (point, reason) of the invalid ones. ``check`` (e.g. a
        :class:`perp_engine.run.preflight.Preflight`'s) is called on each config; a PerpError makes its point invalid.

        Invalid points are an error (nothing queued) unless ``skip_invalid``."""
        if self.size > max_points:
            raise PerpError("sweep", f"the grid has {self.size} points, more than {max_points}; split it or raise --max-points")
        configs, invalid = self.split_points(check)
        if invalid and not skip_invalid:
            point, reason = invalid[0]
            raise PerpError("sweep", f"{len(invalid)} of {self.size} points are invalid, e.g. {describe_point(point)}: {reason}; "
                                     "nothing was queued (--skip-invalid queues the valid ones)")
        if not configs:
            raise PerpError("sweep", "no valid point in the grid; nothing was queued")
        return configs, invalid

    def split_points(self, check: Callable[[RunConfig], object] | None = None
                     ) -> tuple[list[RunConfig], list[tuple[dict, str]]]:
        """Every point's validated RunConfig, in grid order, and the (point, reason) of those RunConfig (or
        ``check``) refuses; nothing is raised for them."""
        configs, invalid = [], []
        for point in self.points():
            values = {**self.base, **point}
            preset = values.pop("preset", None)
            try:
                config = RunConfig.create(preset, **values)
                if check is not None:
                    check(config)
                configs.append(config)
            except PerpError as err:
                invalid.append((point, str(err)))
        return configs, invalid

    def to_dict(self) -> dict:
        return {"name": self.name, "base": dict(self.base), "grid": dict(self.grid)}


def load_sweep_file(path: str | Path) -> SweepSpec:
    """Read a sweep file (YAML, or JSON for *.json); PerpError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise PerpError("sweep", f"{path} is not a file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise PerpError("sweep", f"{path} is not UTF-8 text; a sweep file is YAML or JSON") from None
    except OSError as err:
        raise PerpError("sweep", f"cannot read {path}: {err.strerror or err}") from None
    try:
        data = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as err:
        raise PerpError("sweep", f"{path} is not valid JSON ({err.msg} at line {err.lineno})") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise PerpError("sweep", f"{path} is not valid YAML ({getattr(err, 'problem', None) or err}{where})") from None
    if not isinstance(data, dict):
        raise PerpError("sweep", f"{path} must hold a mapping with keys {', '.join(FILE_KEYS)}")
    unknown = sorted(str(key) for key in data if key not in FILE_KEYS)
    if unknown:
        raise PerpError("sweep", f"{path}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(FILE_KEYS)}")
    grid, base = data.get("grid") or {}, data.get("base") or {}
    if not isinstance(grid, dict) or not isinstance(base, dict):
        raise PerpError("sweep", f"{path}: grid and base must be mappings of RunConfig fields")
    grid = {k: v if isinstance(v, list) else [v] for k, v in grid.items()}
    return SweepSpec(grid=grid, base=base, name=str(data.get("name") or ""))


def parse_values(name: str, texts: list[str]) -> list:
    """Typed values of field ``name`` from command-line texts: commas separate values, ``+`` joins list items."""
    if name not in FIELDS:
        raise PerpError("sweep", f"unknown field {name}; allowed: {', '.join(FIELDS)}")
    kind = str(FIELDS[name].type)
    values = []
    for text in texts:
        for item in (t.strip() for t in str(text).split(",")):
            if not item:
                raise PerpError(name, f"empty value in {text!r}; separate values with commas, e.g. 0.3,0.5")
            values.append(_parse(name, kind, item))
    return values


def _parse(name: str, kind: str, text: str):
    if name == "zero_shot_limit":
        return zero_shot_limit_value(text)
    if kind.startswith("tuple"):
        return tuple(t for t in text.split("+") if t)
    if kind == "bool":
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise PerpError(name, f"{text!r} is not allowed; use true or false")
    if kind in ("int", "float"):
        try:
            return int(text) if kind == "int" else float(text)
        except ValueError:
            raise PerpError(name, f"{text!r} is not {'an integer' if kind == 'int' else 'a number'}") from None
    return text


def with_axes(spec: SweepSpec | None, axes: dict[str, list], name: str = "") -> SweepSpec:
    """``spec`` (or nothing) with command-line axes: several values make a grid axis, one value a base field;
    either replaces what the file said for that field."""
    grid = dict(spec.grid) if spec else {}
    base = dict(spec.base) if spec else {}
    for field_name, values in axes.items():
        grid.pop(field_name, None)
        base.pop(field_name, None)
        if len(values) == 1:
            base[field_name] = values[0]
        else:
            grid[field_name] = values
    return SweepSpec(grid=grid, base=base, name=name or (spec.name if spec else ""))


def checked_configs(spec: SweepSpec, *, skip_invalid: bool = False,
                    max_points: int = MAX_POINTS) -> tuple[list[RunConfig], list[tuple[dict, str]]]:
    """:meth:`SweepSpec.configs`, each valid point also checked against the machine, model and text
    (:mod:`perp_engine.run.preflight`); a point that fails is invalid like one with a bad field."""
    from .preflight import Preflight  # torch and transformers load here, not when the CLI imports this module

    return spec.configs(skip_invalid=skip_invalid, max_points=max_points, check=Preflight().check)


def queue_sweep(spec: SweepSpec, executor, store, *, keep_model: bool = False, recompute: bool = False,
                skip_invalid: bool = False, max_points: int = MAX_POINTS) -> tuple[int, list[int], list[tuple[dict, str]]]:
    """Check every point (:func:`checked_configs`), record the sweep, submit one run per valid point.

    Returns (sweep id, run ids in grid order, skipped (point, reason)). Nothing is queued if a point is invalid
    and ``skip_invalid`` is False."""
    configs, skipped = checked_configs(spec, skip_invalid=skip_invalid, max_points=max_points)
    sweep_id = store.create_sweep(spec.name, spec.to_dict())
    run_ids = [executor.submit(cfg, sweep_id=sweep_id, keep_model=keep_model, recompute=recompute, checked=True)
               for cfg in configs]
    return sweep_id, run_ids, skipped


def describe_point(point: dict) -> str:
    """``sparsity=0.5 train=norms+biases``: a point as the command-line flags would write it."""
    return " ".join(f"{k}={'+'.join(v) if isinstance(v, (list, tuple)) else v}" for k, v in point.items())
