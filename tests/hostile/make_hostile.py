"""Seeded generator of hostile inputs for every ``sareval`` command (issues 11 and 19).

Each :class:`Case` builds, in a fresh folder, one broken input next to valid ones (a store, a
model card, a dataset tree made with ``sareval synth``, results shards, a training history) and
returns the :class:`Invocation`: the command line, the text the error line must contain (the
file or option to blame), the outputs that hold a sentinel before the run, and the environment.
Everything random comes from :data:`SEED`, so a failing case rebuilds the same bytes.
The valid material is made once per session (:class:`World`); cases copy what they break.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import pickle
import shutil
import socket
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import rasterio
from shape_testing import get_assets

from sareval.card import ONNX_METADATA_KEY
from sareval.preprocess.synth_bigearthnet import generate_bigearthnet
from sareval.preprocess.synth_sen12ms import generate_sen12ms

SEED = 11
CANARY = "CODE_RAN"
#: files that are not JSON documents: (case id, bytes)
RAW_JSON = [
    ("not-json", b"{oops"),
    ("not-utf8", b'{"a": "\xff"}'),
    ("deeply-nested", b"[" * 100_000),
    ("huge-number", b'{"a": 1e999999}'),
    ("empty", b""),
]  # a hostile payload creates this file in the case folder if it runs


@dataclass
class World:
    """Valid material, made once: a store, an ONNX model with a card, synth trees, shards."""

    root: Path
    store: Path
    model: Path
    card: dict[str, Any]
    sen12ms: Path  # synth root holding sen12ms/ and sen12mscr/
    sen12ms_store: Path  # the synth SEN12MS tree preprocessed (32x32, IGBP labels)
    ben: Path  # synth root holding the BigEarthNet trees and CSVs
    shards: tuple[Path, Path]
    history: Path
    reben: Path | None = None  # a synth reBEN tree (None without pyarrow)
    state_shards: tuple[Path, ...] = ()  # multi-label per-sample shards (embedded states)
    predictions: Path | None = None  # a `shape --save-predictions` file


@dataclass
class Invocation:
    """A command line, what its error must name, and the outputs to guard."""

    args: list[str]
    names: str
    outputs: list[Path] = field(default_factory=list)  # files holding a sentinel
    out_dirs: list[Path] = field(default_factory=list)  # folders holding a sentinel file
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    id: str
    build: Callable[[Path, World], Invocation]
    slow: bool = False
    root: bool = False  # makes device nodes (mknod): run as root only


def make_world(root: Path, tmp_path_factory: Any) -> World:
    """The session's valid material (a few seconds: two synth trees, two shards)."""
    from click.testing import CliRunner

    from sareval.cli import cli

    assets = get_assets(tmp_path_factory)
    model = assets.onnx["single-label"]
    generate_sen12ms(root / "s12", n_patches=6, size=32, seed=SEED)
    generate_bigearthnet(root / "ben", n_patches=6, size=24, seed=SEED)
    shards = (root / "part0.json", root / "part1.json")
    for i, out in enumerate(shards):
        args = ["-q", "shape", "-m", str(model), "-d", str(assets.store), "-s", "clear",
                "--shard", f"{i}/2", "--out", str(out)]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    sen12ms_store = root / "s12.h5"
    args = ["-q", "preprocess", "sen12ms", str(root / "s12" / "sen12ms"), "--workers", "1",
            "--cr-root", str(root / "s12" / "sen12mscr"), "--out", str(sen12ms_store)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    state_shards = (root / "state0.json", root / "state1.json")
    for i, out in enumerate(state_shards):
        args = ["-q", "shape", "-m", str(assets.onnx["multi-label"]), "-d", str(assets.store),
                "-s", "cloudy", "--per-sample", "--shard", f"{i}/2", "--out", str(out)]  # fmt: skip
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 0, result.output
    predictions = root / "pred.h5"
    args = ["-q", "shape", "-m", str(model), "-d", str(assets.store), "-s", "clear",
            "--save-predictions", str(predictions), "--out", str(root / "pred.json")]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    history = root / "run" / "metrics.jsonl"
    history.parent.mkdir()
    doc = json.loads(shards[0].read_text())
    val = {"clear": {"players": doc["players"], "metrics": doc["metrics"]}}
    history.write_text(json.dumps({"epoch": 1, "train_loss": 0.5, "val": val}) + "\n")
    reben = None
    with contextlib.suppress(ImportError):
        import pyarrow.parquet  # noqa: F401

        from sareval.preprocess.synth_bigearthnet_v2 import generate_bigearthnet_v2

        generate_bigearthnet_v2(root / "reben", n_patches=5, size=12, seed=SEED)
        reben = root / "reben"
    return World(
        root, assets.store, model, assets.cards["single-label"].to_dict(),
        root / "s12", sen12ms_store, root / "ben", shards, history, reben, state_shards,
        predictions,
    )  # fmt: skip


# --- helpers that break one thing ---------------------------------------------------------------
def out_dir(t: Path) -> Path:
    d = t / "out"
    d.mkdir(exist_ok=True)
    return d


def payload_pickle(path: Path, canary: Path) -> Path:
    """A pickle that would run ``touch canary`` if loaded with plain pickle.load."""

    class Evil:
        def __reduce__(self) -> tuple[Any, tuple[str]]:
            return (os.system, (f"touch {canary}",))

    path.write_bytes(pickle.dumps({"x": Evil()}))
    return path


def broken_store(t: Path, w: World, change: Callable[[h5py.File], None]) -> Path:
    """A copy of the valid store with ``change`` applied."""
    path = t / "broken.h5"
    shutil.copy(w.store, path)
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def replace(name: str, data: Any, **attrs: Any) -> Callable[[h5py.File], None]:
    """Replace dataset ``name`` (keeping its attributes unless overridden)."""

    def change(f: h5py.File) -> None:
        old = dict(f[name].attrs)
        del f[name]
        ds = f.create_dataset(name, data=data)
        ds.attrs.update({**old, **attrs})

    return change


def delete(name: str) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f[name]

    return change


def set_attr(name: str, key: str, value: Any) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        f[name].attrs[key] = value

    return change


def del_attr(name: str, key: str) -> Callable[[h5py.File], None]:
    def change(f: h5py.File) -> None:
        del f[name].attrs[key]

    return change


def card_file(t: Path, w: World, change: Callable[[dict], Any] | dict) -> Path:
    """The valid card JSON with ``change`` applied (a dict update or a function of the dict)."""
    card: Any = json.loads(json.dumps(w.card))
    if callable(change):
        replaced = change(card)  # a list replaces the whole card
        card = replaced if isinstance(replaced, list) else card
    else:
        card.update(change)
    path = t / "card.json"
    path.write_text(json.dumps(card, allow_nan=True))
    return path


def norm(band: str, **values: Any) -> Callable[[dict], None]:
    """Set fields of one band's normalisation in a card dict."""

    def change(card: dict) -> None:
        card["normalization"][band].update(values)

    return change


def copy_tree(t: Path, src: Path) -> Path:
    dst = t / "tree"
    shutil.copytree(src, dst)
    return dst


def rewrite_tiff(path: Path, change: Callable[[np.ndarray], np.ndarray]) -> None:
    """Rewrite a GeoTIFF with ``change`` applied to its (bands, H, W) array."""
    with rasterio.open(path) as src:
        data, profile = src.read(), dict(src.profile)
    data = change(data)
    profile.update(count=data.shape[0], height=data.shape[1], width=data.shape[2],
                   dtype=data.dtype.name)  # fmt: skip
    path.unlink()
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def first_file(root: Path, pattern: str) -> Path:
    """The first file matching ``pattern``; in a BigEarthNet tree, of a train.csv patch."""
    found = sorted(root.rglob(pattern))
    split = root / "train.csv"
    if split.is_file():
        names = set(split.read_text().replace(",", "\n").split())
        found = [p for p in found if p.parent.name in names]
    return found[0]


def shard_copy(t: Path, w: World, change: Callable[[dict], Any], index: int = 0) -> Path:
    """A copy of shard ``index`` with ``change`` applied to its document."""
    doc = json.loads(w.shards[index].read_text())
    change(doc)
    path = t / f"bad{index}.json"
    path.write_text(json.dumps(doc))
    return path


def first_counts(doc: dict) -> dict:
    """The count arrays of the first coalition of a results document."""
    return doc["counts"][doc["coalitions"][0]]


# --- commands -------------------------------------------------------------------------------------
def shape_args(w: World, t: Path, *extra: str, model: Path | None = None,
               store: Path | None = None) -> tuple[list[str], Path]:  # fmt: skip
    out = out_dir(t) / "r.json"
    args = ["shape", "-m", str(model or w.model), "-d", str(store or w.store), "-s", "clear",
            "--out", str(out), "--overwrite", *extra]  # fmt: skip
    return args, out


def shape_case(*extra: str, names: str, env: dict | None = None) -> Callable:
    def build(t: Path, w: World) -> Invocation:
        args, out = shape_args(w, t, *extra)
        return Invocation(args, names, [out, out.with_suffix(".csv")], env=env or {})

    return build


def shape_input_case(
    names: str,
    model: Callable[[Path, World], Path] | None = None,
    store: Callable[[Path, World], Path] | None = None,
) -> Callable:
    """``shape`` with the model or the store replaced by what ``model`` / ``store`` make."""

    def build(t: Path, w: World) -> Invocation:
        args, out = shape_args(
            w, t, model=model(t, w) if model else None, store=store(t, w) if store else None
        )
        return Invocation(args, names, [out, out.with_suffix(".csv")])

    return build


def store_case(change: Callable[[h5py.File], None], command: str = "info") -> Callable:
    def build(t: Path, w: World) -> Invocation:
        store = broken_store(t, w, change)
        if command == "info":
            return Invocation(["info", str(store)], store.name)
        args, out = shape_args(w, t, store=store)
        return Invocation(args, store.name, [out, out.with_suffix(".csv")])

    return build


def card_case(change: Callable[[dict], Any] | dict, command: str = "attach") -> Callable:
    def build(t: Path, w: World) -> Invocation:
        card = card_file(t, w, change)
        if command == "attach":
            out = out_dir(t) / "m.onnx"
            args = ["card", "attach", str(w.model), str(card), "--out", str(out), "--overwrite"]
            return Invocation(args, card.name, [out])
        if command == "export":
            out = out_dir(t) / "m.onnx"
            args = ["export", "--arch", "resnet18", "--card", str(card), "--out", str(out),
                    "--overwrite"]  # fmt: skip
            return Invocation(args, card.name, [out])
        return Invocation(["info", str(card)], card.name)

    return build


def raw_card_case(content: bytes) -> Callable:
    """``card attach`` of a card file holding ``content`` (not a JSON card)."""

    def build(t: Path, w: World) -> Invocation:
        card = text_file("card.json", content)(t, w)
        out = out_dir(t) / "m.onnx"
        args = ["card", "attach", str(w.model), str(card), "--out", str(out), "--overwrite"]
        return Invocation(args, card.name, [out])

    return build


def raw_merge_case(content: bytes) -> Callable:
    """``merge`` of a shard file holding ``content`` (not a results JSON) and a valid one."""

    def build(t: Path, w: World) -> Invocation:
        bad = text_file("p.json", content)(t, w)
        out = out_dir(t) / "m.json"
        args = ["merge", str(bad), str(w.shards[1]), "--out", str(out), "--overwrite"]
        return Invocation(args, bad.name, [out])

    return build


def embedded_card_case(text: str) -> Callable:
    """``card check`` of an ONNX model whose embedded card JSON is ``text`` (unvalidated)."""

    def build(t: Path, w: World) -> Invocation:
        import onnx

        model = onnx.load(str(w.model))
        for p in model.metadata_props:
            if p.key == ONNX_METADATA_KEY:
                p.value = text
        path = t / "embedded.onnx"
        onnx.save(model, str(path))
        return Invocation(["card", "check", str(path)], path.name)

    return build


def sen12ms_case(
    breaker: Callable[[Path, Path], tuple[Path | str, list[str]]],
) -> Callable:
    """``preprocess sen12ms`` on a copy of the synth tree broken by ``breaker(tree, case dir)``,
    which returns what to blame and extra arguments."""

    def build(t: Path, w: World) -> Invocation:
        tree = copy_tree(t, w.sen12ms)
        blame, extra = breaker(tree / "sen12ms", t)
        out = out_dir(t) / "store.h5"
        args = ["preprocess", "sen12ms", str(tree / "sen12ms"), "--workers", "1",
                "--out", str(out), "--overwrite", *extra]  # fmt: skip
        return Invocation(args, blame if isinstance(blame, str) else blame.name, [out])

    return build


def ben_case(breaker: Callable[[Path, Path], tuple[Path | str, list[str]]]) -> Callable:
    """``preprocess bigearthnet`` (train split) on a broken copy of the synth trees."""

    def build(t: Path, w: World) -> Invocation:
        tree = copy_tree(t, w.ben)
        blame, extra = breaker(tree, t)
        out = out_dir(t) / "store.h5"
        args = ["preprocess", "bigearthnet", "--s2-root", str(tree / "BigEarthNet-v1.0"),
                "--s1-root", str(tree / "BigEarthNet-S1-v1.0"),
                "--split-csv", str(tree / "train.csv"), "--workers", "1",
                "--out", str(out), "--overwrite", *extra]  # fmt: skip
        return Invocation(args, blame if isinstance(blame, str) else blame.name, [out])

    return build


def labels_pickle(values: Callable[[int], np.ndarray]) -> Callable:
    """An IGBP label pickle for every patch, the first patch's vector from ``values``."""

    def breaker(root: Path, t: Path) -> tuple[Path | str, list[str]]:
        names = sorted(p.name for p in root.rglob("*_s2_*.tif"))
        rng = np.random.default_rng(SEED)
        table = {n: rng.dirichlet(np.ones(17)) for n in names}
        table[names[0]] = values(17)
        path = t / "labels.pkl"
        path.write_bytes(pickle.dumps(table))
        return names[0], ["--labels", str(path)]

    return breaker


def tiff_breaker(pattern: str, change: Callable[[np.ndarray], np.ndarray]) -> Callable:
    def breaker(root: Path, t: Path) -> tuple[Path | str, list[str]]:
        path = first_file(root, pattern)
        rewrite_tiff(path, change)
        return path, []

    return breaker


def file_breaker(pattern: str, content: bytes | None) -> Callable:
    """Replace (or, with None, delete) the first file matching ``pattern``."""

    def breaker(root: Path, t: Path) -> tuple[Path | str, list[str]]:
        path = first_file(root, pattern)
        if content is None:
            path.unlink()
        else:
            path.write_bytes(content)
        return path, []

    return breaker


def merge_case(change: Callable[[dict], Any], names: str | None = None) -> Callable:
    def build(t: Path, w: World) -> Invocation:
        bad = shard_copy(t, w, change)
        out = out_dir(t) / "m.json"
        args = ["merge", str(bad), str(w.shards[1]), "--out", str(out), "--overwrite"]
        return Invocation(args, names or bad.name, [out, out.with_suffix(".csv")])

    return build


def report_case(content: bytes | str, name: str = "metrics.jsonl") -> Callable:
    def build(t: Path, w: World) -> Invocation:
        path = t / "run" / name
        path.parent.mkdir()
        path.write_bytes(content.encode() if isinstance(content, str) else content)
        out = out_dir(t) / "report"
        return Invocation(["report", str(path), "--out", str(out), "--overwrite"], name,
                          out_dirs=[out])  # fmt: skip

    return build


def results_report_case(change: Callable[[dict], Any]) -> Callable[[Path, World], Invocation]:
    """``report`` of a results file: the first shard with ``change`` applied."""

    def build(t: Path, w: World) -> Invocation:
        doc = json.loads(w.shards[0].read_text())
        change(doc)
        return report_case(json.dumps(doc), "r.json")(t, w)

    return build


def history_line(change: Callable[[dict], Any]) -> Callable[[Path, World], Invocation]:
    """A ``metrics.jsonl`` whose record is the valid one with ``change`` applied."""

    def build(t: Path, w: World) -> Invocation:
        record = json.loads(w.history.read_text())
        change(record)
        return report_case(json.dumps(record) + "\n")(t, w)

    return build


def args_case(args: Callable[[Path, World], list[str]], names: str,
              outputs: Callable[[Path], list[Path]] = lambda t: []) -> Callable:  # fmt: skip
    """A command line built from the case folder and the world; outputs guarded."""

    def build(t: Path, w: World) -> Invocation:
        return Invocation(args(t, w), names, outputs(t))

    return build


def export_case(
    *args: str, names: str, make: Callable[[Path, World], Any] | None = None
) -> Callable:
    """``export ARGS`` ({t}: the case folder, {out}: its output folder) after ``make``."""

    def build(t: Path, w: World) -> Invocation:
        if make is not None:
            make(t, w)
        argv = ["export", *(a.format(t=t, out=out_dir(t)) for a in args)]
        return Invocation(argv, names, [out_dir(t) / "m.onnx"])

    return build


def train_args(*extra: str, data: Callable[[Path, World], Path] | None = None) -> Callable:
    def args(t: Path, w: World) -> list[str]:
        store = data(t, w) if data else w.sen12ms_store
        return ["train", "--data", str(store), "--epochs", "1", "--out", str(out_dir(t) / "run"),
                "--overwrite", *(e.format(store=store) for e in extra)]  # fmt: skip

    return args


def text_file(name: str, content: bytes) -> Callable[[Path, World], Path]:
    def make(t: Path, w: World) -> Path:
        path = t / name
        path.write_bytes(content)
        return path

    return make


def checkpoint_with_arguments(threshold: str) -> Callable[[Path, World], None]:
    """A toolbox checkpoint whose ``_arguments.txt`` has ``threshold: <threshold>``."""

    def make(t: Path, w: World) -> None:
        (t / "20200101_000000_model_best.pth").write_bytes(b"not read before the arguments")
        (t / "20200101_000000_arguments.txt").write_text(
            "model: ResNet18\nuse_s1: True\nuse_s2: True\nuse_RGB: False\n"
            f"label_type: single_label\nthreshold: {threshold}\n"
        )

    return make


# --- the cases ------------------------------------------------------------------------------------
def cases() -> list[Case]:
    """Every hostile case, in a fixed order."""
    c: list[Case] = []

    def add(id: str, build: Callable[[Path, World], Invocation], slow: bool = False) -> None:
        c.append(Case(id, build, slow))

    # shape: options
    for id, extra, names in [
        ("batch-size-0", ["--batch-size", "0"], "--batch-size"),
        ("batch-size-text", ["--batch-size", "x"], "--batch-size"),
        ("device-cuda-x", ["--device", "cuda:x"], "--device"),
        ("device-gpu", ["--device", "gpu"], "--device"),
        ("device-cpu-1", ["--device", "cpu:1"], "--device"),
        ("bootstrap-huge", ["--replicates", "1000000000"], "--replicates"),
        ("bootstrap-negative", ["--replicates", "-1"], "--replicates"),
        ("shard-empty-part", ["--shard", "0/1000"], "--shard"),
        ("shard-index-too-big", ["--shard", "3/2"], "--shard"),
        ("shard-text", ["--shard", "a/b"], "--shard"),
        ("shard-zero-parts", ["--shard", "0/0"], "--shard"),
        ("by-unknown", ["--by", "weather"], "--by"),
        ("by-bad-edges", ["--by", "cloud-cover=0.5,0.2"], "cloud-cover"),
        ("players-unknown-band", ["--players", "sar;opt=B99"], "B99"),
        ("backend-unknown", ["--backend", "tensorflow"], "--backend"),
        ("precision-onnx-fp16", ["--precision", "fp16"], "--precision"),
        ("threads-negative", ["--threads", "-1"], "--threads"),
        ("unknown-option", ["--frobnicate"], "--frobnicate"),
    ]:
        add(f"shape-{id}", shape_case(*extra, names=names))
    add(
        "shape-subset-unknown",
        lambda t, w: Invocation(
            [*shape_args(w, t)[0][:6], "nosuch", *shape_args(w, t)[0][7:]], "nosuch"
        ),
    )
    for id, make, names in [
        ("missing", lambda t, w: t / "none.onnx", "none.onnx"),
        ("not-onnx", text_file("m.onnx", b"hello"), "m.onnx"),
        ("training-checkpoint", lambda t, w: state_dict(t), "last.pt"),
        ("pickle-payload", lambda t, w: payload_pickle(t / "evil.pt", t / CANARY), "evil.pt"),
        ("no-card", lambda t, w: embedded_card_model(t, w, None), "nocard.onnx"),
    ]:
        add(f"shape-model-{id}", shape_input_case(names, model=make))
    for id, make, names in [
        ("missing", lambda t, w: t / "none.h5", "none.h5"),
        ("not-hdf5", text_file("s.h5", b"\x89HDF junk"), "s.h5"),
    ]:
        add(f"shape-store-{id}", shape_input_case(names, store=make))

    for id, change in [
        ("size-mismatch", lambda d: d["input"].update(height=16, width=16)),
        ("classes-mismatch", lambda d: d.update(class_names=[f"k{i}" for i in range(6)])),
        ("task-mismatch", lambda d: d.update(task="multi-label", class_names=["a", "b"])),
    ]:
        add(f"shape-card-{id}", shape_input_case("test.h5", model=card_model(change)))

    # shape/merge: colliding or unwritable outputs (refused before any work)
    def collide(*extra: str, out_name: str = "r.json", names: str = "") -> Callable:
        def build(t: Path, w: World) -> Invocation:
            d = out_dir(t)
            out = d / out_name
            args = ["shape", "-m", str(w.model), "-d", str(w.store), "-s", "clear",
                    "--out", str(out), "--overwrite",
                    *[a.replace("OUT", str(d)) for a in extra]]  # fmt: skip
            guarded = [out, out.with_suffix(".csv")]
            guarded += [Path(a.replace("OUT", str(d))) for a in extra if a.startswith("OUT")]
            return Invocation(args, names or out_name, sorted(set(guarded)))

        return build

    add("collide-out-csv-suffix", collide(out_name="r.csv"))
    add("collide-out-txt", collide(out_name="r.txt"))
    add("collide-csv-equals-out", collide("--csv", "OUT/r.json", names="r.json"))
    add("collide-predictions-equal-out", collide("--save-predictions", "OUT/r.json",
                                                 names="r.json"))  # fmt: skip
    add("collide-predictions-equal-csv", collide("--save-predictions", "OUT/r.csv",
                                                 names="r.csv"))  # fmt: skip
    add(
        "collide-out-is-store",
        lambda t, w: Invocation(
            [
                "shape",
                "-m",
                str(w.model),
                "-d",
                str(copy_store(t, w)),
                "-s",
                "clear",
                "--out",
                str(t / "copy.h5"),
                "--overwrite",
            ],
            "copy.h5",
            [t / "copy.csv"],
        ),
    )
    add(
        "collide-out-is-directory",
        lambda t, w: Invocation(
            [*shape_args(w, t)[0][:-3], "--out", str(out_dir(t)), "--overwrite"], "out"
        ),
    )
    add(
        "collide-out-under-a-file",
        lambda t, w: Invocation(
            [*shape_args(w, t)[0][:-3], "--out", str(sentinel(t) / "r.json"), "--overwrite"],
            "sentinel.txt",
            [t / "sentinel.txt"],
        ),
    )

    def merge_collide(out_name: str, csv: str | None = None, names: str = "") -> Callable:
        def build(t: Path, w: World) -> Invocation:
            d = out_dir(t)
            out = d / out_name
            extra = ["--csv", str(d / csv)] if csv else []
            args = ["merge", *map(str, w.shards), "--out", str(out), "--overwrite", *extra]
            return Invocation(args, names or out_name, [out, out.with_suffix(".csv")])

        return build

    add("merge-collide-out-csv", merge_collide("x.csv"))
    add("merge-collide-csv-equals-out", merge_collide("x.json", csv="x.json"))
    add(
        "merge-collide-out-is-shard",
        lambda t, w: Invocation(
            [
                "merge",
                str(shard_copy(t, w, lambda d: None)),
                str(w.shards[1]),
                "--out",
                str(t / "bad0.json"),
                "--overwrite",
            ],
            "bad0.json",
            [t / "bad0.csv"],
        ),
    )

    # torchrun environment (checked before any work)
    full = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "localhost",
            "MASTER_PORT": "29500"}  # fmt: skip
    for id, env, names in [
        ("stray-rank", {"RANK": "1"}, "WORLD_SIZE"),
        ("rank-text", {**full, "RANK": "abc"}, "RANK"),
        ("no-master-addr", {k: v for k, v in full.items() if k != "MASTER_ADDR"}, "MASTER_ADDR"),
        ("rank-out-of-range", {**full, "RANK": "2"}, "RANK"),
        ("world-size-zero", {**full, "WORLD_SIZE": "0"}, "WORLD_SIZE"),
        ("local-rank-negative", {**full, "LOCAL_RANK": "-1"}, "LOCAL_RANK"),
        ("port-out-of-range", {**full, "MASTER_PORT": "99999"}, "MASTER_PORT"),
        ("local-rank-only", {"LOCAL_RANK": "0"}, "RANK"),
        ("empty-master-port", {**full, "MASTER_PORT": ""}, "MASTER_PORT"),
    ]:
        add(f"env-{id}", shape_case(names=names, env=env))

    # broken stores: info (and shape for some)
    n = 40
    store_breaks: list[tuple[str, Callable[[h5py.File], None]]] = [
        ("no-ids", delete("ids")),
        ("no-labels", delete("labels")),
        ("no-subsets", delete("subsets")),
        ("no-cloud-cover", delete("cloud_cover")),
        ("no-sensors", lambda f: (delete("s1")(f), delete("s2")(f), delete("s2_cloudy")(f))),
        ("no-bands-attr", del_attr("s2", "bands")),
        ("bands-not-json", set_attr("s2", "bands", "B01,B02")),
        ("bands-count-wrong", set_attr("s2", "bands", json.dumps(["B01", "B02"]))),
        ("ids-short", replace("ids", np.array([b"a"] * (n - 1)))),
        ("cloud-cover-long", replace("cloud_cover", np.zeros(n + 3, np.float32))),
        ("labels-short", replace("labels/single", np.zeros(n - 2, np.int64))),
        ("labels-kind-bogus", set_attr("labels/single", "kind", "bogus")),
        ("labels-class-names-not-json", set_attr("labels/single", "class_names", "{")),
        ("labels-width-wrong", replace("labels/multi", np.zeros((n, 3), np.uint8))),
        ("subset-row-out-of-range", replace("subsets/tail", np.array([5, 6, n + 5]))),
        ("subset-row-negative", replace("subsets/tail", np.array([-1, 5, 6]))),
        ("subset-unsorted", replace("subsets/tail", np.array([7, 5, 6]))),
        ("subset-duplicate", replace("subsets/tail", np.array([5, 5, 6]))),
        ("subset-float", replace("subsets/tail", np.array([5.0, 6.0]))),
        ("subset-2d", replace("subsets/tail", np.array([[5, 6]]))),
        ("subset-optical-bogus", set_attr("subsets/tail", "optical", "s3")),
        ("subset-optical-missing", del_attr("subsets/cloudy", "optical")),
        ("height-zero", lambda f: f.attrs.__setitem__("height", 0)),
        ("height-mismatch", lambda f: f.attrs.__setitem__("height", 9)),
        ("height-missing", lambda f: f.attrs.__delitem__("height")),
        ("format-wrong", lambda f: f.attrs.__setitem__("format", "other")),
        ("version-2", lambda f: f.attrs.__setitem__("format_version", 2)),
        ("no-digest", lambda f: f.attrs.__delitem__("content_digest")),
        ("stats-missing", delete("stats/s1_sum")),
        ("stats-short", replace("stats/s2_count", np.zeros((n - 1, 13), np.int64))),
        ("cloudy-available-missing", delete("s2_cloudy_available")),
        ("s2-wrong-size", replace("s2", np.zeros((n, 13, 4, 4), np.uint16))),
        ("options-not-json", lambda f: f.attrs.__setitem__("options", "{oops")),
        ("labels-float", replace("labels/single", np.linspace(0, 5, n))),
        ("ids-numbers", replace("ids", np.arange(n))),
        ("cloud-cover-text", replace("cloud_cover", np.array([b"x"] * n))),
        ("s2-text", replace("s2", np.full((n, 13, 8, 8), b"a"))),
    ]
    for id, change in store_breaks:
        add(f"info-store-{id}", store_case(change))
    for id, change in store_breaks[:8] + store_breaks[14:22] + store_breaks[-4:]:
        add(f"shape-store-{id}", store_case(change, "shape"))
    add("info-store-truncated", lambda t, w: Invocation(["info", str(truncated(t, w))], "cut.h5"))
    add(
        "info-store-empty-file",
        lambda t, w: Invocation(["info", str(text_file("empty.h5", b"")(t, w))], "empty.h5"),
    )
    add(
        "info-store-text",
        lambda t, w: Invocation(["info", str(text_file("text.h5", b"hello\n")(t, w))], "text.h5"),
    )

    # info: other files
    add("info-missing", lambda t, w: Invocation(["info", str(t / "nope.h5")], "nope.h5"))
    add("info-directory", lambda t, w: Invocation(["info", str(out_dir(t))], "out"))
    add(
        "info-unknown-suffix",
        lambda t, w: Invocation(["info", str(text_file("notes.txt", b"hi")(t, w))], "notes.txt"),
    )
    add(
        "info-onnx-garbage",
        lambda t, w: Invocation(
            ["info", str(text_file("g.onnx", bytes(range(256)))(t, w))], "g.onnx"
        ),
    )
    add("info-training-checkpoint", lambda t, w: Invocation(["info", str(state_dict(t))],
                                                            "last.pt"))  # fmt: skip
    add(
        "info-pickle-payload",
        lambda t, w: Invocation(
            ["info", str(payload_pickle(t / "evil.pt", t / CANARY))], "evil.pt"
        ),
    )
    add(
        "info-card-not-utf8",
        lambda t, w: Invocation(
            ["info", str(text_file("c.json", b'{"task": "\xff\xfe"}')(t, w))], "c.json"
        ),
    )

    # model cards: attach (most), check (embedded), export and info (some)
    big = 1e308
    card_breaks: list[tuple[str, Callable[[dict], Any] | dict]] = [
        ("std-nan", norm("VV", std=math.nan)),
        ("std-inf", norm("VV", std=math.inf)),
        ("std-1e308", norm("VV", std=big)),
        ("std-zero", norm("VV", std=0)),
        ("std-negative", norm("VV", std=-1.0)),
        ("std-string", norm("VV", std="1")),
        ("std-bool", norm("VV", std=True)),
        ("mean-nan", norm("VV", mean=math.nan)),
        ("mean-1e308", norm("VV", mean=big)),
        ("clip-nan", norm("VV", clip=[math.nan, 0.0])),
        ("clip-one-value", norm("VV", clip=[0.0])),
        ("clip-string", norm("VV", clip="a")),
        ("clip-reversed", norm("VV", clip=[1.0, -1.0])),
        ("nan-fill-string", norm("VV", nan="zero")),
        ("transform-not-object", lambda d: d["normalization"].__setitem__("VV", 3)),
        ("normalization-list", {"normalization": [1, 2]}),
        ("normalization-unknown-band", lambda d: d["normalization"].__setitem__("B99", {})),
        ("bands-5", lambda d: d["modalities"][0].__setitem__("bands", 5)),
        ("bands-empty", lambda d: d["modalities"][0].__setitem__("bands", [])),
        ("bands-not-strings", lambda d: d["modalities"][0].__setitem__("bands", [1, 2])),
        ("modality-name-number", lambda d: d["modalities"][0].__setitem__("name", 5)),
        ("modalities-empty", {"modalities": []}),
        ("modalities-object", {"modalities": {"sar": ["VV"]}}),
        ("height-true", lambda d: d["input"].__setitem__("height", True)),
        ("height-negative", lambda d: d["input"].__setitem__("height", -8)),
        ("height-huge", lambda d: d["input"].__setitem__("height", 10**9)),
        ("height-string", lambda d: d["input"].__setitem__("height", "8")),
        ("height-float", lambda d: d["input"].__setitem__("height", 8.5)),
        ("channels-empty", lambda d: d["input"].__setitem__("channels", [])),
        ("channels-unknown", lambda d: d["input"]["channels"].__setitem__(0, "XX")),
        ("channels-object", lambda d: d["input"]["channels"].__setitem__(0, {"a": 1})),
        ("channels-duplicate", lambda d: d["input"]["channels"].__setitem__(1, "VV")),
        ("input-list", {"input": [1]}),
        ("task-bogus", {"task": "regression"}),
        ("task-list", {"task": ["single-label"]}),
        ("class-names-empty", {"class_names": []}),
        ("class-names-numbers", {"class_names": [1, 2, 3]}),
        ("class-names-duplicate", lambda d: d["class_names"].__setitem__(1, d["class_names"][0])),
        ("threshold-text", {"threshold": "abc"}),
        ("threshold-two", {"threshold": 2}),
        ("threshold-bool", {"threshold": True}),
        ("threshold-nan", {"threshold": math.nan}),
        ("output-bogus", {"output": "scores"}),
        ("card-version-4", {"card_version": 4}),
        ("provenance-string", {"provenance": "x"}),
        ("missing-task", lambda d: d.pop("task")),
        ("top-level-list", lambda d: [d]),
    ]
    for id, change in card_breaks:
        add(f"card-attach-{id}", card_case(change))
    for id, change in card_breaks[:6] + card_breaks[17:19] + card_breaks[23:25]:
        add(f"card-info-{id}", card_case(change, "info"))
    for id, change in card_breaks[:3]:
        add(f"card-export-{id}", card_case(change, "export"))
    for id, content in RAW_JSON:
        add(f"card-attach-{id}", raw_card_case(content))
    for id, text in [
        ("not-json", "{oops"),
        ("std-inf", json.dumps(w_card_placeholder())),
        ("list", "[]"),
    ]:
        add(f"card-check-embedded-{id}", embedded_card_case(text))
    add(
        "card-check-no-card",
        lambda t, w: Invocation(
            ["card", "check", str(embedded_card_model(t, w, None))], "nocard.onnx"
        ),
    )
    add(
        "card-template-bad-preset",
        lambda t, w: Invocation(["card", "template", "--preset", "nope"], "--preset"),
    )

    # preprocess sen12ms: broken synth trees
    add("s12-s2-wrong-size", sen12ms_case(tiff_breaker("*_s2_*.tif", lambda d: d[:, :16, :16])))
    add("s12-s1-wrong-size", sen12ms_case(tiff_breaker("*_s1_*.tif", lambda d: d[:, :16, :16])))
    add("s12-lc-wrong-size", sen12ms_case(tiff_breaker("*_lc_*.tif", lambda d: d[:, :8, :8])))
    add("s12-s2-wrong-bands", sen12ms_case(tiff_breaker("*_s2_*.tif", lambda d: d[:12])))
    add(
        "s12-s1-wrong-dtype",
        sen12ms_case(tiff_breaker("*_s1_*.tif", lambda d: d.astype(np.float64))),
    )
    add("s12-lc-float", sen12ms_case(tiff_breaker("*_lc_*.tif", lambda d: d.astype(np.float32))))
    add("s12-lc-unlabelled", sen12ms_case(tiff_breaker("*_lc_*.tif", np.zeros_like)))
    add(
        "s12-lc-out-of-range",
        sen12ms_case(tiff_breaker("*_lc_*.tif", lambda d: np.full_like(d, 200))),
    )
    add("s12-s2-truncated", sen12ms_case(file_breaker("*_s2_*.tif", b"II*\x00\x08\x00")))
    add("s12-s2-text", sen12ms_case(file_breaker("*_s2_*.tif", b"not a tiff")))
    add("s12-s1-missing", sen12ms_case(file_breaker("*_s1_*.tif", None)))
    add("s12-lc-missing", sen12ms_case(file_breaker("*_lc_*.tif", None)))
    for id, values in [
        ("negative", lambda k: np.r_[-0.5, 1.5, np.zeros(k - 2)]),
        ("nan", lambda k: np.r_[np.nan, 1.0, np.zeros(k - 2)]),
        ("inf", lambda k: np.r_[np.inf, np.zeros(k - 1)]),
        ("float32-overflow", lambda k: np.r_[1e39, -1e39 + 1, np.zeros(k - 2)]),
        ("sum-half", lambda k: np.full(k, 0.5 / k)),
        ("sum-zero", lambda k: np.zeros(k)),
        ("wrong-length", lambda k: np.full(k - 1, 1 / (k - 1))),
    ]:
        add(f"s12-labels-{id}", sen12ms_case(labels_pickle(values)))
    add("s12-labels-payload", sen12ms_case(
        lambda r, t: (payload_pickle(t / "labels.pkl", t / CANARY),
                      ["--labels", str(t / "labels.pkl")])))  # fmt: skip
    add(
        "s12-labels-not-dict",
        sen12ms_case(
            lambda r, t: (pickled(t / "labels.pkl", [1, 2]), ["--labels", str(t / "labels.pkl")])
        ),
    )
    add("s12-split-list-unknown-patch", sen12ms_case(
        lambda r, t: (text_path(t / "list.txt", "ROIs1158_spring_s2_1_p999.tif\n"),
                      ["--split-list", str(t / "list.txt")])))  # fmt: skip
    add("s12-split-list-not-utf8", sen12ms_case(
        lambda r, t: (bytes_path(t / "list.txt", b"\xff\xfe\x00bad"),
                      ["--split-list", str(t / "list.txt")])))  # fmt: skip
    add(
        "s12-split-list-ints",
        sen12ms_case(
            lambda r, t: (pickled(t / "list.pkl", [1, 2, 3]), ["--split-list", str(t / "list.pkl")])
        ),
    )
    add(
        "s12-root-missing",
        lambda t, w: Invocation(
            [
                "preprocess",
                "sen12ms",
                str(t / "nope"),
                "--out",
                str(out_dir(t) / "store.h5"),
                "--overwrite",
            ],
            "nope",
            [out_dir(t) / "store.h5"],
        ),
    )
    add(
        "s12-root-not-utf8",
        lambda t, w: Invocation(
            [
                "preprocess",
                "sen12ms",
                os.fsdecode(non_utf8_tree(t, w)),
                "--workers",
                "1",
                "--out",
                str(out_dir(t) / "store.h5"),
                "--overwrite",
            ],
            "root",
            [out_dir(t) / "store.h5"],
        ),
    )
    add("s12-cr-root-missing", sen12ms_case(lambda r, t: ("nocr", ["--cr-root", str(t / "nocr")])))
    add(
        "s12-multi-label-threshold",
        sen12ms_case(lambda r, t: ("--multi-label-threshold", ["--multi-label-threshold", "2"])),
    )

    # preprocess bigearthnet: broken synth trees
    def band(name: str) -> str:
        return f"*_{name}.tif"

    add("ben-b05-wrong-size", ben_case(tiff_breaker(band("B05"), lambda d: d[:, :6, :6])))
    add("ben-b01-wrong-size", ben_case(tiff_breaker(band("B01"), lambda d: d[:, :2, :2])))
    add("ben-b02-wrong-size", ben_case(tiff_breaker(band("B02"), lambda d: d[:, :12, :12])))
    add("ben-b02-wrong-dtype", ben_case(tiff_breaker(band("B02"), lambda d: d.astype(np.float32))))
    add("ben-vv-wrong-size", ben_case(tiff_breaker(band("VV"), lambda d: d[:, :12, :12])))
    add("ben-b12-text", ben_case(file_breaker(band("B12"), b"text")))
    add("ben-vh-missing", ben_case(file_breaker(band("VH"), None)))
    add("ben-labels-not-json", ben_case(file_breaker("S2*_labels_metadata.json", b"{not json")))
    add(
        "ben-labels-wrong-type",
        ben_case(file_breaker("S2*_labels_metadata.json", b'{"labels": 5}')),
    )
    add(
        "ben-labels-unknown-class",
        ben_case(file_breaker("S2*_labels_metadata.json", b'{"labels": ["Moon craters"]}')),
    )
    add("ben-labels-deeply-nested", ben_case(
        file_breaker("S2*_labels_metadata.json", b"[" * 100_000)))  # fmt: skip
    add(
        "ben-labels-not-utf8",
        ben_case(file_breaker("S2*_labels_metadata.json", b'{"labels": ["\xff"]}')),
    )
    add(
        "ben-split-missing-patch",
        ben_case(
            lambda r, t: (
                text_path(
                    r / "train.csv",
                    "S2A_MSIL2A_20170101T000000_9_9,S1A_IW_GRDH_1SDV_20170101T000000_33UUP_9_9\n",
                ),
                [],
            )
        ),
    )
    add(
        "ben-split-not-utf8",
        ben_case(lambda r, t: (bytes_path(r / "train.csv", b"\xff\xfe,\xff\n"), [])),
    )
    add("ben-cloudy-list-unknown", ben_case(
        lambda r, t: (text_path(t / "cloudy.csv", "S2A_unknown_9_9\n"),
                      ["--cloudy-list", str(t / "cloudy.csv")])))  # fmt: skip
    add("ben-bad-resampling", ben_case(lambda r, t: ("--resampling", ["--resampling", "magic"])))

    # export: bad options
    preset = ["--arch", "resnet18", "--preset", "study-resnet18", "--task", "single-label"]
    out = ["--out", "{out}/m.onnx", "--overwrite"]
    for id, extra, names in [
        ("input-size-huge", ["--input-size", "100000"], "--input-size"),
        ("input-size-zero", ["--input-size", "0"], "--input-size"),
        ("opset-99", ["--opset", "99"], "--opset"),
        ("opset-17", ["--opset", "17"], "--opset"),
        ("format-bogus", ["--format", "keras"], "--format"),
        ("tolerance-negative", ["--tolerance", "-1"], "--tolerance"),
        ("fusion-bogus", ["--fusion", "middle"], "--fusion"),
    ]:
        add(f"export-{id}", export_case(*preset, *out, *extra, names=names))
    add("export-arch-unknown", export_case("--arch", "alexnet", *preset[2:], *out, names="alexnet"))
    add("export-preset-unknown", export_case(*preset[:3], "nope", *out, names="--preset"))
    add("export-suffix-unknown", export_case(*preset, "--out", "{out}/m.xyz", names="m.xyz"))
    for id, value in [("text", "abc"), ("two", "2")]:
        add(f"export-threshold-{id}", export_case(
            "--checkpoint", "{t}/20200101_000000_model_best.pth", *out,
            names="_arguments.txt", make=checkpoint_with_arguments(value)))  # fmt: skip
    add("export-checkpoint-payload", export_case(
        *preset, "--checkpoint", "{t}/evil.pth", *out, names="evil.pth",
        make=lambda t, w: payload_pickle(t / "evil.pth", t / CANARY)))  # fmt: skip
    add("export-out-equals-card", export_case(
        "--arch", "resnet18", "--card", "{t}/card.json", "--out", "{t}/card.json",
        "--overwrite", "--format", "onnx", names="card.json",
        make=lambda t, w: card_file(t, w, {})))  # fmt: skip

    # merge: bad inputs
    for id, change in [
        ("count-1e30", lambda d: set_first_count(d, 10**30)),
        ("count-negative", lambda d: set_first_count(d, -1)),
        ("count-float", lambda d: set_first_count(d, 1.5)),
        ("count-string", lambda d: set_first_count(d, "7")),
        ("count-bool", lambda d: set_first_count(d, True)),
        ("counts-ragged", lambda d: ragged(d)),
        ("counts-shape", lambda d: reshape_first(d)),
        ("tie-count-negative", lambda d: d["ties"]["counts"].__setitem__(d["coalitions"][0], -3)),
        ("not-a-shard", lambda d: d["provenance"].__setitem__("shard", None)),
        ("other-model", lambda d: d["provenance"]["model"].__setitem__("sha256", "0" * 64)),
        ("format-version", lambda d: d.__setitem__("format_version", 7)),
        ("duplicate-index", lambda d: d["provenance"]["shard"].__setitem__("index", 1)),
    ]:
        add(f"merge-{id}", merge_case(change))
    add(
        "merge-missing-shard",
        lambda t, w: Invocation(
            ["merge", str(w.shards[0]), "--out", str(out_dir(t) / "m.json"), "--overwrite"],
            "shards",
            [out_dir(t) / "m.json"],
        ),
    )
    for id, content in RAW_JSON:
        add(f"merge-{id}", raw_merge_case(content))
    add(
        "merge-file-missing",
        lambda t, w: Invocation(
            ["merge", str(t / "gone.json"), "--out", str(out_dir(t) / "m.json")], "gone.json"
        ),
    )

    # outputs that would replace an input or cannot be a file
    add("s12-out-is-labels", sen12ms_case(
        lambda r, t: ("labels.pkl", ["--labels", str(pickled(t / "labels.pkl", {})),
                                     "--out", str(t / "labels.pkl")])))  # fmt: skip
    add("card-attach-out-is-card", lambda t, w: Invocation(
        ["card", "attach", str(w.model), str(card_file(t, w, {})), "--out",
         str(t / "card.json"), "--overwrite"], "card.json"))  # fmt: skip
    add("train-out-is-file", lambda t, w: Invocation(
        [*train_args()(t, w)[:-3], "--out", str(sentinel(t)), "--overwrite"], "sentinel.txt",
        [sentinel(t)]))  # fmt: skip
    add("report-out-is-file", lambda t, w: Invocation(
        ["report", str(w.history), "--out", str(sentinel(t)), "--overwrite"], "sentinel.txt",
        [sentinel(t)]))  # fmt: skip

    # report: bad inputs
    add("report-metric-unknown", lambda t, w: Invocation(
        ["report", str(w.shards[0]), "--metric", "bogus", "--out", str(out_dir(t) / "report"),
         "--overwrite"], "--metric", out_dirs=[out_dir(t) / "report"]))  # fmt: skip
    for id, content in RAW_JSON[2:]:
        add(f"report-history-{id}", report_case(content))
        add(f"report-results-{id}", report_case(content, "r.json"))
    add("report-history-not-json", report_case("{oops\n"))
    add("report-history-not-utf8", report_case(b'{"epoch": "\xff"}\n'))
    add("report-history-list", report_case("[1, 2]\n"))
    add("report-epoch-text", history_line(lambda r: r.__setitem__("epoch", "one")))
    add("report-epoch-bool", history_line(lambda r: r.__setitem__("epoch", True)))
    add("report-loss-text", history_line(lambda r: r.__setitem__("train_loss", "low")))
    add("report-val-list", history_line(lambda r: r.__setitem__("val", [1])))
    add("report-val-metrics-missing", history_line(lambda r: r["val"]["clear"].pop("metrics")))
    add(
        "report-val-players-number",
        history_line(lambda r: r["val"]["clear"].__setitem__("players", 2)),
    )
    add("report-val-V-text", history_line(lambda r: first_metric(r).__setitem__("V", "high")))
    for id, change in [
        ("metrics-number", lambda d: d.__setitem__("metrics", 5)),
        ("players-number", lambda d: d.__setitem__("players", 5)),
        ("metric-text", lambda d: d["metrics"].__setitem__("oa", "x")),
        ("provenance-list", lambda d: d.__setitem__("provenance", [])),
        ("by-number", lambda d: d.__setitem__("by", 3)),
        ("task-number", lambda d: d.__setitem__("task", 7)),
        ("relevance-text", lambda d: d["metrics"]["oa"].__setitem__("relevance", "high")),
    ]:
        add(f"report-results-{id}", results_report_case(change))
    add("report-results-wrong-format", report_case('{"format": "other"}', "r.json"))
    add(
        "report-input-missing",
        lambda t, w: Invocation(
            ["report", str(t / "nothing"), "--out", str(out_dir(t) / "report")], "nothing"
        ),
    )
    add(
        "report-empty-folder",
        lambda t, w: Invocation(
            ["report", str(empty_dir(t)), "--out", str(out_dir(t) / "report")], "empty"
        ),
    )

    # train: bad options and inputs
    for id, extra, names in [
        ("epochs-0", ["--epochs", "0"], "--epochs"),
        ("batch-size-0", ["--batch-size", "0"], "--batch-size"),
        ("cloudy-prob-2", ["--cloudy-prob", "2"], "--cloudy-prob"),
        ("seeds-text", ["--seeds", "a-b"], "--seeds"),
        ("device-cuda-x", ["--device", "cuda:x"], "--device"),
        ("device-tpu", ["--device", "tpu"], "--device"),
        ("preset-unknown", ["--preset", "nope"], "nope"),
        ("arch-unknown", ["--arch", "alexnet"], "alexnet"),
        ("fusion-bogus", ["--fusion", "middle"], "--fusion"),
        ("workers-negative", ["--workers", "-1"], "--workers"),
    ]:
        add(f"train-{id}", args_case(train_args(*extra), names))
    add("train-val-missing", args_case(train_args("--val", "/nonexistent/v.h5"), "v.h5"))
    add(
        "train-val-subset-unknown",
        args_case(train_args("--val", str(Path("{store}")), "--val-subsets", "nosuch"), "nosuch"),
    )
    add(
        "train-select-metric-unknown",
        args_case(train_args("--val", "{store}", "--select-metric", "bogus"), "bogus"),
    )
    add("train-data-missing", args_case(train_args(data=lambda t, w: t / "none.h5"), "none.h5"))
    add("train-data-text", args_case(train_args(data=text_file("d.h5", b"text")), "d.h5"))
    add(
        "train-data-broken-store",
        args_case(train_args(data=lambda t, w: broken_store(t, w, delete("labels"))), "broken.h5"),
    )
    c += guard_cases()
    c += issue19_cases()
    return c


# --- the output guard (issue 19): inputs, special files and links as outputs ---------------------
def special(t: Path, kind: str) -> Path:
    """A special file named ``kind`` in the case folder: ``null`` / ``full`` (character devices
    with the numbers of /dev/null and /dev/full), ``fifo``, ``socket``, ``block``."""
    path = t / kind
    if kind in ("null", "full"):
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3 if kind == "null" else 7))
    elif kind == "block":
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 250))
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        sock.close()
    return path


def pick(paths: list[Path], salt: str) -> Path:
    """One of ``paths`` (sorted), chosen by :data:`SEED` and ``salt``: a seeded case."""
    ordered = sorted(paths)
    rng = np.random.default_rng([SEED, *salt.encode()])
    return ordered[int(rng.integers(len(ordered)))]


def alias(t: Path, target: Path, how: str, name: str) -> Path:
    """``target`` under another name in the case folder: a ``hard`` or ``soft`` link."""
    path = t / name
    if how == "hard":
        os.link(target, path)
    else:
        os.symlink(target, path)
    return path


def guard_cases() -> list[Case]:
    """Outputs that are inputs (same path, hard link, symlink, a file of an input tree) or
    special files that must not be written (devices, FIFOs, sockets for stores and folders;
    a full device): every one refused or failed with one line, nothing replaced."""
    c: list[Case] = []

    def add(id: str, build: Callable[[Path, World], Invocation], root: bool = False) -> None:
        c.append(Case(f"guard-{id}", build, root=root))

    def shape_out(option: str, make: Callable[[Path, World], Path], names: str) -> Callable:
        def build(t: Path, w: World) -> Invocation:
            model, store = t / "m.onnx", copy_store(t, w)
            shutil.copy(w.model, model)
            target = make(t, w)
            args = ["shape", "-m", str(model), "-d", str(store), "-s", "clear",
                    "--out", str(t / "r.json"), option, str(target), "--overwrite"]  # fmt: skip
            if option == "--out":
                args[args.index("--out") + 1] = str(t / "unused.json")
                args[-3:-1] = ["--out", str(target)]
            return Invocation(args, names)

        return build

    for how in ("hard", "soft"):
        add(
            f"shape-csv-{how}-link-to-store",
            shape_out("--csv", lambda t, w, h=how: alias(t, t / "copy.h5", h, "s.csv"), "s.csv"),
        )
        add(f"shape-predictions-{how}-link-to-model",
            shape_out("--save-predictions",
                      lambda t, w, h=how: alias(t, t / "m.onnx", h, "p.h5"), "m.onnx"))  # fmt: skip
    add("shape-csv-is-store", shape_out("--csv", lambda t, w: t / "copy.h5", "copy.h5"))
    add("shape-out-socket", shape_out("--out", lambda t, w: special(t, "socket"), "socket"))
    add("shape-csv-full", shape_out("--csv", lambda t, w: special(t, "full"), "full"), root=True)
    add("shape-out-block", shape_out("--out", lambda t, w: special(t, "block"), "block"), root=True)
    add(
        "shape-predictions-full",
        shape_out("--save-predictions", lambda t, w: special(t, "full"), "full"),
        root=True,
    )

    def merge_out(make: Callable[[Path, Path], Path], names: str, csv: bool = False) -> Callable:
        def build(t: Path, w: World) -> Invocation:
            parts = [t / "part0.json", t / "part1.json"]
            for src, dst in zip(w.shards, parts, strict=True):
                shutil.copy(src, dst)
            target = make(t, parts[int(pick(parts, names).name[4])])
            out = (
                ["--out", str(t / "m.json"), "--csv", str(target)]
                if csv
                else ["--out", str(target)]
            )
            return Invocation(["merge", *map(str, parts), *out, "--overwrite"], names)

        return build

    add(
        "merge-out-hard-link-to-shard",
        merge_out(lambda t, p: alias(t, p, "hard", "m.json"), "m.json"),
    )
    add(
        "merge-csv-soft-link-to-shard",
        merge_out(lambda t, p: alias(t, p, "soft", "m.csv"), "m.csv", csv=True),
    )
    add("merge-out-full", merge_out(lambda t, p: special(t, "full"), "full"), root=True)
    add("merge-csv-full", merge_out(lambda t, p: special(t, "full"), "full", csv=True), root=True)

    def report_out(make: Callable[[Path], Path], names: str) -> Callable:
        def build(t: Path, w: World) -> Invocation:
            results = t / "results"
            results.mkdir()
            shutil.copy(pick(list(w.shards), "report"), results / "r.json")
            return Invocation(["report", str(results), "--out", str(make(t)), "--overwrite"], names)

        return build

    add("report-out-is-input-folder", report_out(lambda t: t / "results", "results"))
    add("report-out-holds-input", report_out(lambda t: t, "results"))
    add("report-out-fifo", report_out(lambda t: special(t, "fifo"), "fifo"))
    add("report-out-null", report_out(lambda t: special(t, "null"), "null"), root=True)

    def s12_out(make: Callable[[Path, Path], Path], names: str | None = None) -> Callable:
        """``preprocess sen12ms`` (with its CR tree) whose --out ``make(case, tree)`` names."""

        def build(t: Path, w: World) -> Invocation:
            tree = copy_tree(t, w.sen12ms)
            out = make(t, tree)
            args = ["preprocess", "sen12ms", str(tree / "sen12ms"), "--cr-root",
                    str(tree / "sen12mscr"), "--workers", "1", "--out", str(out),
                    "--overwrite"]  # fmt: skip
            return Invocation(args, names or out.name)

        return build

    add("s12-out-is-a-tif", s12_out(lambda t, r: pick(list(r.rglob("*_s2_*.tif")), "s12-s2")))
    add(
        "s12cr-out-is-a-tif",
        s12_out(lambda t, r: pick(list((r / "sen12mscr").rglob("*.tif")), "cr")),
    )
    add(
        "s12-out-soft-link-to-a-tif",
        s12_out(lambda t, r: alias(t, pick(list(r.rglob("*_lc_*.tif")), "lc"), "soft", "o.h5")),
    )
    add("s12-out-fifo", s12_out(lambda t, r: special(t, "fifo")))
    add("s12-out-null", s12_out(lambda t, r: special(t, "null")), root=True)

    def ben_out(make: Callable[[Path, Path], Path], names: str | None = None) -> Callable:
        def build(t: Path, w: World) -> Invocation:
            tree = copy_tree(t, w.ben)
            out = make(t, tree)
            args = ["preprocess", "bigearthnet", "--s2-root", str(tree / "BigEarthNet-v1.0"),
                    "--s1-root", str(tree / "BigEarthNet-S1-v1.0"),
                    "--split-csv", str(tree / "train.csv"), "--snow-list",
                    str(tree / "patches_with_seasonal_snow.csv"), "--workers", "1",
                    "--out", str(out), "--overwrite"]  # fmt: skip
            return Invocation(args, names or out.name)

        return build

    add(
        "ben-out-hard-link-to-split",
        ben_out(lambda t, r: alias(t, r / "train.csv", "hard", "o.h5")),
    )
    add("ben-out-is-snow-list", ben_out(lambda t, r: r / "patches_with_seasonal_snow.csv"))
    add(
        "ben-out-is-an-s1-tif",
        ben_out(lambda t, r: pick(list((r / "BigEarthNet-S1-v1.0").rglob("*.tif")), "ben-s1")),
    )
    add("ben-out-socket", ben_out(lambda t, r: special(t, "socket")))

    def reben_out(make: Callable[[Path, Path], Path], names: str | None = None) -> Callable:
        def build(t: Path, w: World) -> Invocation:
            if w.reben is None:
                import pytest

                pytest.skip("pyarrow is not installed")
            tree = copy_tree(t, w.reben)
            out = make(t, tree)
            args = ["preprocess", "bigearthnet-v2", "--s2-root", str(tree / "BigEarthNet-S2"),
                    "--s1-root", str(tree / "BigEarthNet-S1"),
                    "--metadata", str(tree / "metadata.parquet"), "--workers", "1",
                    "--out", str(out), "--overwrite"]  # fmt: skip
            return Invocation(args, names or out.name)

        return build

    add(
        "reben-out-hard-link-to-metadata",
        reben_out(lambda t, r: alias(t, r / "metadata.parquet", "hard", "o.h5")),
    )
    add(
        "reben-out-soft-link-to-metadata",
        reben_out(lambda t, r: alias(t, r / "metadata.parquet", "soft", "o.h5")),
    )
    add(
        "reben-out-is-an-s2-tif",
        reben_out(lambda t, r: pick(list((r / "BigEarthNet-S2").rglob("*.tif")), "reben-s2")),
    )
    add("reben-out-fifo", reben_out(lambda t, r: special(t, "fifo")))
    add("reben-out-full", reben_out(lambda t, r: special(t, "full")), root=True)

    for kind, root in (("fifo", False), ("socket", False), ("null", True)):
        add(f"synth-out-{kind}", lambda t, w, k=kind: Invocation(
            ["synth", "sen12ms", str(special(t, k)), "--patches", "4", "--size", "8",
             "--overwrite"], k), root=root)  # fmt: skip
    add("train-out-fifo", lambda t, w: Invocation(
        [*train_args()(t, w)[:-3], "--out", str(special(t, "fifo")), "--overwrite"],
        "fifo"))  # fmt: skip

    def attach_out(make: Callable[[Path, Path, Path], Path], names: str) -> Callable:
        def build(t: Path, w: World) -> Invocation:
            model = t / "m.onnx"
            shutil.copy(w.model, model)
            card = card_file(t, w, lambda d: d["input"].update(height=8, width=8))  # it fits
            args = ["card", "attach", str(model), str(card), "--out", str(make(t, model, card)),
                    "--overwrite"]  # fmt: skip
            return Invocation(args, names)

        return build

    add("attach-out-is-model", attach_out(lambda t, m, c: m, "m.onnx"))
    add(
        "attach-out-hard-link-to-model",
        attach_out(lambda t, m, c: alias(t, m, "hard", "o.onnx"), "o.onnx"),
    )
    add(
        "attach-out-soft-link-to-card",
        attach_out(lambda t, m, c: alias(t, c, "soft", "o.onnx"), "card.json"),
    )
    add("attach-out-full", attach_out(lambda t, m, c: special(t, "full"), "full"), root=True)
    add("card-template-out-full", lambda t, w: Invocation(
        ["card", "template", "--preset", "sen12ms-s1s2", "--out", str(special(t, "full"))],
        "full"), root=True)  # fmt: skip
    add("export-out-hard-link-to-checkpoint", lambda t, w: Invocation(
        ["export", "--checkpoint", str(state_dict(t)), "--format", "onnx",
         "--out", str(alias(t, t / "last.pt", "hard", "m.onnx")), "--overwrite"],
        "m.onnx"))  # fmt: skip
    return c


# --- small builders used above ------------------------------------------------------------------
def state_dict(t: Path) -> Path:
    """A ``torch.save`` state dict named like a model file (training's checkpoints)."""
    import torch

    path = t / "last.pt"
    torch.save({"conv.weight": torch.zeros(2, 2)}, path)
    return path


def card_model(change: Callable[[dict], Any]) -> Callable[[Path, World], Path]:
    """The valid model with a valid card that contradicts the store as ``change`` says."""

    def make(t: Path, w: World) -> Path:
        card = json.loads(json.dumps(w.card))
        change(card)
        return embedded_card_model(t, w, json.dumps(card))

    return make


def embedded_card_model(t: Path, w: World, text: str | None) -> Path:
    """The valid model with its card removed (``text`` None) or replaced by ``text``."""
    import onnx

    model = onnx.load(str(w.model))
    props = [p for p in model.metadata_props if p.key != ONNX_METADATA_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(props)
    if text is not None:
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, text
    path = t / "nocard.onnx"
    onnx.save(model, str(path))
    return path


def w_card_placeholder() -> dict[str, Any]:
    """A card-shaped object with a non-finite std (embedded without validation)."""
    return {"task": "single-label", "class_names": ["a", "b"], "input": {"channels": ["VV"]},
            "modalities": [{"name": "sar", "bands": ["VV"]}],
            "normalization": {"VV": {"std": math.inf}}}  # fmt: skip


def copy_store(t: Path, w: World) -> Path:
    path = t / "copy.h5"
    shutil.copy(w.store, path)
    return path


def sentinel(t: Path) -> Path:
    return t / "sentinel.txt"


def truncated(t: Path, w: World) -> Path:
    data = w.store.read_bytes()
    path = t / "cut.h5"
    path.write_bytes(data[: len(data) // 2])
    return path


def pickled(path: Path, obj: Any) -> Path:
    path.write_bytes(pickle.dumps(obj))
    return path


def text_path(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def bytes_path(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def empty_dir(t: Path) -> Path:
    d = t / "empty"
    d.mkdir()
    return d


def non_utf8_tree(t: Path, w: World) -> bytes:
    """A copy of the synth SEN12MS tree under a folder whose name is not UTF-8."""
    root = os.fsencode(t) + b"/root-\xff"
    shutil.copytree(os.fsencode(w.sen12ms / "sen12ms"), root)
    return root


def deep_set(array: Any, value: Any) -> Any:
    """``array`` (nested lists) with its first scalar replaced by ``value``."""
    if isinstance(array, list) and array:
        return [deep_set(array[0], value), *array[1:]]
    return value


def set_first_count(doc: dict, value: Any) -> None:
    counts = first_counts(doc)
    key = next(iter(counts))
    counts[key] = deep_set(counts[key], value)


def ragged(doc: dict) -> None:
    counts = first_counts(doc)
    key = next(k for k, v in counts.items() if isinstance(v, list) and v and isinstance(v[0], list))
    counts[key][0] = counts[key][0] + [0]


def reshape_first(doc: dict) -> None:
    counts = first_counts(doc)
    key = next(iter(counts))
    counts[key] = [counts[key], counts[key]]


def first_metric(record: dict) -> dict:
    metrics = record["val"]["clear"]["metrics"]
    return metrics[next(iter(metrics))]


# --- issue 19: every class of the second audit ---------------------------------------------------
def reben_rows(t: Path, w: World) -> tuple[Path, list[dict[str, Any]]]:
    """A copy of the synth reBEN tree and the rows of its ``metadata.parquet`` (skipped without
    pyarrow)."""
    if w.reben is None:
        import pytest

        pytest.skip("pyarrow is not installed")
    import pyarrow.parquet as pq

    tree = copy_tree(t, w.reben)
    return tree, pq.read_table(tree / "metadata.parquet").to_pylist()


def same_tile(rows: list[dict[str, Any]], salt: str) -> tuple[int, int]:
    """Two rows (seeded order) whose S2 patches lie on one tile."""
    by_tile: dict[str, list[int]] = {}
    for i, r in enumerate(rows):
        by_tile.setdefault(r["patch_id"].split("_")[-3], []).append(i)
    pairs = [(a, b) for ix in by_tile.values() for a in ix for b in ix if a < b]
    rng = np.random.default_rng([SEED, *salt.encode()])
    return pairs[int(rng.integers(len(pairs)))]


def reben_meta_case(change: Callable[[list[dict[str, Any]]], str]) -> Callable:
    """``preprocess bigearthnet-v2`` whose metadata rows ``change`` breaks; it returns the text
    the error line must hold."""

    def build(t: Path, w: World) -> Invocation:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tree, rows = reben_rows(t, w)
        names = change(rows)
        meta = tree / "metadata.parquet"
        pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(meta)), meta)
        out = out_dir(t) / "store.h5"
        args = ["preprocess", "bigearthnet-v2", "--s2-root", str(tree / "BigEarthNet-S2"),
                "--s1-root", str(tree / "BigEarthNet-S1"), "--metadata", str(meta),
                "--workers", "1", "--out", str(out), "--overwrite"]  # fmt: skip
        return Invocation(args, names, [out])

    return build


def s1_paired_twice(rows: list[dict[str, Any]]) -> str:
    i, j = same_tile(rows, "paired")
    rows[j]["s1_name"] = rows[i]["s1_name"]
    return (  # and row j's S1 patch is at another grid position than its S2 patch
        f"metadata.parquet: 2 problems: S1 patch {rows[i]['s1_name']} is paired with two S2 "
        f"patches: row {i} ({rows[i]['patch_id']}) and row {j} ({rows[j]['patch_id']}); "
        f"row {j} ({rows[j]['patch_id']}): s1_name {rows[i]['s1_name']} is at grid position"
    )


def s1_swapped(rows: list[dict[str, Any]]) -> str:
    i, j = same_tile(rows, "swapped")
    rows[i]["s1_name"], rows[j]["s1_name"] = rows[j]["s1_name"], rows[i]["s1_name"]
    return f"row {i} ({rows[i]['patch_id']}): s1_name {rows[i]['s1_name']} is at grid"


def s1_other_tile(rows: list[dict[str, Any]]) -> str:
    i = int(np.random.default_rng([SEED, 7]).integers(len(rows)))
    parts = rows[i]["s1_name"].split("_")
    parts[-3] = "31ABC"
    rows[i]["s1_name"] = "_".join(parts)
    return f"row {i} ({rows[i]['patch_id']}): s1_name {rows[i]['s1_name']} is on tile 31ABC"


def many_problems(rows: list[dict[str, Any]]) -> str:
    """Three problems in three rows: one line lists them all."""
    i, j = same_tile(rows, "many")
    k = next(x for x in range(len(rows)) if x not in (i, j))
    rows[k]["split"] = "dev"
    rows[j]["patch_id"] = rows[i]["patch_id"]
    parts = rows[i]["s1_name"].split("_")
    parts[-3] = "30XYZ"
    rows[i]["s1_name"] = "_".join(parts)
    return "metadata.parquet: 3 problems:"


def state_merge_case(
    section: str, name: str, change: Callable[[np.ndarray], np.ndarray]
) -> Callable:
    """``merge`` of per-sample shards, one whose embedded ``section`` array ``name`` is replaced
    by ``change(array)`` and re-encoded with a recomputed sha256."""

    def build(t: Path, w: World) -> Invocation:
        import base64
        import io

        from sareval.evaluator.embedded import encode_arrays

        parts = []
        for i, src in enumerate(w.state_shards):
            doc = json.loads(src.read_text())
            if i == int(pick(list(w.state_shards), section + name).stem[-1]):
                raw = base64.b64decode(doc[section]["data"])
                with np.load(io.BytesIO(raw), allow_pickle=False) as z:
                    arrays = {k: z[k] for k in z.files}
                arrays[name] = change(arrays[name])
                doc[section] = encode_arrays(arrays, doc[section]["n"])
            parts.append(t / f"shard{i}.json")
            parts[-1].write_text(json.dumps(doc))
        bad = parts[int(pick(list(w.state_shards), section + name).stem[-1])]
        out = out_dir(t) / "m.json"
        args = ["merge", *map(str, parts), "--out", str(out), "--overwrite"]
        return Invocation(
            args,
            f"{bad.name}: unreadable {section!r} section (array {name!r}",
            [out, out.with_suffix(".csv")],
        )

    return build


def tamper(how: str) -> Callable[[np.ndarray], np.ndarray]:
    """An array made complex, or all NaN (its shape and dtype kept)."""
    if how == "complex":
        return lambda a: a.astype(np.complex64) + 1j
    return lambda a: np.full(a.shape, np.nan, a.dtype)


def compare_case(setups: Callable[[Path, Path], tuple[str, str]], names: str) -> Callable:
    """``report --compare A B`` with setups made from the case folder and a copy of the world's
    predictions file."""

    def build(t: Path, w: World) -> Invocation:
        assert w.predictions is not None
        pred = t / "pred.h5"
        shutil.copy(w.predictions, pred)
        a, b = setups(t, pred)
        out = out_dir(t) / "report"
        args = ["report", "--compare", a, b, "--out", str(out), "--overwrite", "--bootstrap", "20"]
        return Invocation(args, names, out_dirs=[out])

    return build


def broken_predictions(t: Path, pred: Path, change: Callable[[h5py.File], None]) -> Path:
    bad = t / "bad.h5"
    shutil.copy(pred, bad)
    with h5py.File(bad, "r+") as f:
        change(f)
    return bad


def nan_output(f: h5py.File) -> None:
    out = f["outputs"][()]
    rng = np.random.default_rng([SEED, 19])
    c, s, k = (int(rng.integers(n)) for n in out.shape)
    out[max(c, 1), s, k] = np.nan  # coalition 0 (none) may hold NaN by design (majority)
    f["outputs"][...] = out


def checker_failing_model(t: Path, w: World) -> Path:
    """The valid model (card kept) with one node reading a tensor nothing produces:
    ``onnx.checker`` refuses it."""
    import onnx

    model = onnx.load(str(w.model))
    nodes = list(model.graph.node)
    rng = np.random.default_rng([SEED, 42])
    node = nodes[int(rng.integers(len(nodes)))]
    node.input[0] = "ghost_tensor"
    path = t / "unchecked.onnx"
    onnx.save(model, str(path))
    return path


def int64_output_model(t: Path, w: World) -> Path:
    """The valid model (card kept) with its output cast to int64."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load(str(w.model))
    out = model.graph.output[0]
    model.graph.node.append(
        helper.make_node("Cast", [out.name], ["int_logits"], to=TensorProto.INT64)
    )
    out_type = onnx.helper.make_tensor_value_info(
        "int_logits", TensorProto.INT64, [d.dim_param or d.dim_value for d in
                                          out.type.tensor_type.shape.dim]
    )  # fmt: skip
    del model.graph.output[:]
    model.graph.output.append(out_type)
    path = t / "int64.onnx"
    onnx.save(model, str(path))
    return path


def safetensors_missing_key(t: Path, w: World) -> str:
    """A timm-layout ResNet18 state for the study preset, one seeded key left out."""
    from safetensors.torch import save_file

    from sareval.card import ModelCard
    from sareval.models.registry import build_model_for_card
    from sareval.models.resnet import to_timm_layout

    card = ModelCard.from_preset("study-resnet18", task="single-label")
    state = to_timm_layout(build_model_for_card("resnet18", card).state_dict())
    keys = sorted(k for k in state if not k.endswith("num_batches_tracked"))
    key = keys[int(np.random.default_rng([SEED, 5]).integers(len(keys)))]
    del state[key]
    save_file({k: v.contiguous() for k, v in state.items()}, str(t / "w.safetensors"))
    return key


def overlapping_inputs(band: str) -> Callable[[dict], None]:
    """A version-2 card whose two inputs both take ``band``."""

    def change(card: dict) -> None:
        channels = card["input"].pop("channels")
        sar = [b for b in channels if b in ("VV", "VH")]
        opt = [b for b in channels if b not in sar]
        first, second = ([*sar, band], opt) if band in opt else (sar, [*opt, band])
        card["card_version"] = 2
        card["input"]["tensors"] = [
            {"name": "s1", "channels": first},
            {"name": "s2", "channels": second},
        ]

    return change


def issue19_cases() -> list[Case]:
    """Issue 19's classes not covered by :func:`guard_cases`: reBEN pairing and metadata,
    embedded states of merged shards, ``report --compare`` setups and predictions files, ONNX
    graphs failing ``onnx.checker`` or returning integers, a safetensors file missing a key,
    overlapping card inputs, state dicts as models, non-ASCII paths under ``LANG=C``, an
    unresolvable torchrun ``MASTER_ADDR``."""
    c: list[Case] = []

    def add(id: str, build: Callable[[Path, World], Invocation]) -> None:
        c.append(Case(f"i19-{id}", build))

    # reBEN: S1 and S2 names must agree; several metadata problems in one line
    add("reben-s1-paired-twice", reben_meta_case(s1_paired_twice))
    add("reben-s1-swapped", reben_meta_case(s1_swapped))
    add("reben-s1-other-tile", reben_meta_case(s1_other_tile))
    add("reben-metadata-many-problems", reben_meta_case(many_problems))

    # merge: embedded states with complex or all-NaN arrays, sha256 recomputed
    for section, name, how in [
        ("scores", "scores", "complex"),
        ("per_sample_state", "value.prob_true", "complex"),
        ("scores", "empty", "all-nan"),
        ("per_sample_state", "detector.msp", "all-nan"),
    ]:
        add(f"merge-{section}-{how}", state_merge_case(section, name, tamper(how)))

    # report --compare: labels, repeated runs, predictions files
    add("compare-same-label", compare_case(lambda t, p: (f"run={p}", f"run={p}"),
                                           "both setups are labelled 'run'"))  # fmt: skip
    add("compare-empty-label", compare_case(lambda t, p: (f"a={p}", f"={p}"),
                                            "the label before '=' is empty"))  # fmt: skip
    add("compare-file-twice", compare_case(lambda t, p: (f"a={p},{p}", f"b={p}"),
                                           "listed twice in setup 'a'"))  # fmt: skip
    add("compare-hard-link-twice", compare_case(
        lambda t, p: (f"a={p}", f"b={p},{alias(t, p, 'hard', 'again.h5')}"),
        "again.h5: listed twice in setup 'b'"))  # fmt: skip
    add("compare-nan-outputs", compare_case(
        lambda t, p: (f"a={p}", f"b={broken_predictions(t, p, nan_output)}"),
        "bad.h5: /outputs of coalition"))  # fmt: skip
    for dataset in ("labels", "outputs", "ids"):
        add(f"compare-no-{dataset}", compare_case(
            lambda t, p, d=dataset: (f"a={broken_predictions(t, p, delete(d))}", f"b={p}"),
            f"bad.h5: no dataset /{dataset}"))  # fmt: skip

    # ONNX graphs failing onnx.checker (`info` still describes them), or returning integers
    checker = "unchecked.onnx: not a valid ONNX model (onnx.checker: "
    add("shape-onnx-checker", shape_input_case(checker, model=checker_failing_model))
    add("card-check-onnx-checker", lambda t, w: Invocation(
        ["card", "check", str(checker_failing_model(t, w))], checker))  # fmt: skip
    add(
        "shape-onnx-int64-output",
        shape_input_case("int64.onnx: returns int64 outputs", model=int64_output_model),
    )

    # a safetensors checkpoint missing one key: the key is named
    def missing_key(t: Path, w: World) -> Invocation:
        key = safetensors_missing_key(t, w)
        out = out_dir(t) / "m.onnx"
        args = ["export", "--arch", "resnet18", "--preset", "study-resnet18", "--task",
                "single-label", "--checkpoint", str(t / "w.safetensors"), "--out", str(out),
                "--overwrite"]  # fmt: skip
        return Invocation(args, f"1 missing key: {key}", [out])

    add("export-safetensors-missing-key", missing_key)

    # a card whose two inputs share a band: the band is named
    rng = np.random.default_rng([SEED, 3])
    for band in sorted(str(b) for b in rng.choice(["VV", "VH", "B02", "B8A", "B11"], 2, False)):
        add(f"card-attach-inputs-overlap-{band}", lambda t, w, b=band: dataclasses.replace(
            card_case(overlapping_inputs(b))(t, w),
            names=f"band {b!r} is given twice"))  # fmt: skip

    # a torch.save state dict under a model file's name
    for name in ("model.pt", "model.ts", "net.torchscript"):
        what = f"{name}: a state dict or other torch.save object"
        add(f"shape-state-dict-{name}", shape_input_case(what, model=lambda t, w, n=name: (
            state_dict(t).rename(t / n))))  # fmt: skip
        add(f"info-state-dict-{name}", lambda t, w, n=name: Invocation(
            ["info", str(state_dict(t).rename(t / n))], f"{n}: a state dict"))  # fmt: skip

    # non-ASCII paths under LANG=C
    c_locale = {"LANG": "C", "LC_ALL": "C"}
    for id, name in (("missing-store", "données-ü.h5"), ("missing-model", "模型.onnx")):
        add(f"lang-c-{id}", lambda t, w, n=name: Invocation(
            shape_args(w, t, model=t / n if n.endswith(".onnx") else None,
                       store=t / n if n.endswith(".h5") else None)[0], n,
            env=c_locale))  # fmt: skip
    add("lang-c-info-text-file", lambda t, w: Invocation(
        ["info", str(text_file("Ärger.h5", b"not hdf5")(t, w))], "Ärger.h5",
        env=c_locale))  # fmt: skip
    add("lang-c-merge-non-utf8-name", lambda t, w: Invocation(  # a name no encoding decodes
        ["merge", os.fsdecode(bytes_path(Path(os.fsdecode(os.fsencode(t) + b"/r-\xff.json")),
                                         b"{oops")), str(w.shards[1]),
         "--out", str(out_dir(t) / "m.json"), "--overwrite"], "r-", [out_dir(t) / "m.json"],
        env=c_locale))  # fmt: skip

    # torchrun variables naming an address that does not resolve: one line, fast
    unresolvable = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_PORT": "29531",
                    "MASTER_ADDR": f"no-host-{SEED}.invalid",
                    "SAREVAL_RENDEZVOUS_TIMEOUT": "2"}  # fmt: skip
    add("env-master-addr-unresolvable", shape_case(names="MASTER_ADDR", env=unresolvable))
    return c
