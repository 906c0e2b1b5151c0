#!/usr/bin/env python3
"""Preprocess throughput and store-vs-GeoTIFF read throughput (issue 2's benchmark).

    .venv/bin/python benchmarks/preprocess_throughput.py --workdir /tmp/sareval-preprocess-bench \\
        --patches 2000 --size 256 --workers 2 --compressions lzf,gzip,lz4,zstd,none

1. Generates a SEN12MS + SEN12MS-CR tree (``sareval.preprocess.synth_sen12ms``) under
   ``--workdir`` unless one is there (never in the repository).
2. For each compression: ``preprocess_sen12ms`` of the whole tree (labels from the pickle,
   cloudy versions from the CR tree) with ``--workers`` processes: patches/s and MB/s of
   GeoTIFF bytes read; the store's size vs the raw size of its arrays and vs the GeoTIFFs.
3. Sequential reads of subset ``--subset`` (all of it, or its first ``--read-samples``; S1 + S2
   in batches of ``--batch-size``, one process) from the store with each reader of
   ``STORE_READERS``, and of the same samples from the GeoTIFFs with rasterio (one open + read
   per file): samples/s and MB/s of array data, cold (the files evicted from the page cache
   with posix_fadvise first) and warm (read again at once); ``--repeats`` rounds, medians.
   The whole 2,000-sample ``clear`` subset by default, so that one-time costs (opening, the
   first touch of new buffer memory, slow on this VM) are amortised as in a real pass.

4. With ``--bigearthnet-patches N``: the same for a generated BigEarthNet tree (train split;
   14 single-band GeoTIFFs a sample, 120 x 120), compressions ``--bigearthnet-compressions``.

Prints a markdown table and writes ``<workdir>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def machine() -> str:
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        model = next(
            (line.split(":", 1)[1].strip() for line in lscpu.splitlines() if "Model name" in line),
            "?",
        )
        cpus = next(
            (
                line.split(":", 1)[1].strip()
                for line in lscpu.splitlines()
                if line.startswith("CPU(s)")
            ),
            "?",
        )
    except (OSError, subprocess.CalledProcessError):
        model, cpus = platform.processor(), "?"
    return f"{model}, {cpus} CPUs, {platform.system()} {platform.release()}"


def rounded(run: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in run.items()}


def tree_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*.tif"))


def generate(workdir: Path, patches: int, size: int) -> dict[str, Any]:
    from sareval.preprocess.synth_sen12ms import generate_sen12ms

    marker = workdir / "tree.json"
    if marker.exists():
        return json.loads(marker.read_text())
    t = time.perf_counter()
    summary = generate_sen12ms(workdir / "tree", n_patches=patches, size=size, seed=0,
                               cr_fraction=0.3, progress=True)  # fmt: skip
    summary.pop("cloud_cover")
    summary["seconds"] = time.perf_counter() - t
    marker.write_text(json.dumps(summary))
    return summary


def source_files(root: Path, cr: Path, ids: list[str], with_cloudy: bool) -> list[list[Path]]:
    """Per store row, the GeoTIFFs preprocess reads (s1, s2 and the cloudy s2 if any)."""
    from sareval.preprocess.sen12ms import PatchId

    out = []
    for i in ids:
        p = PatchId.parse(i)
        assert p is not None
        files = [p.path(root, "s1"), p.path(root, "s2")]
        cloudy = p.cr_path(cr, "s2_cloudy")
        if with_cloudy and cloudy.is_file():
            files.append(cloudy)
        out.append(files)
    return out


def run_preprocess(root: Path, cr: Path, out: Path, compression: str, workers: int) -> float:
    from sareval.preprocess.sen12ms import preprocess_sen12ms

    t = time.perf_counter()
    preprocess_sen12ms(root, out, labels=root / "IGBP_probability_labels.pkl", cr_root=cr,
                       workers=workers, compression=compression, overwrite=True,
                       progress=False)  # fmt: skip
    return time.perf_counter() - t


def evict(paths: list[Path]) -> None:
    """Drop these files' pages from the page cache (posix_fadvise DONTNEED; only our files, so
    other users of the machine are unaffected)."""
    for path in paths:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


STORE_READERS = {
    "reader": "sareval's batch reader (reader thread, ring of preallocated buffers, readahead "
    "hints 2 batches ahead; what `sareval shape` reads with)",
    "iter": "Store.iter_batches (new arrays every batch, readahead hints 2 batches ahead)",
    "iter-no-hints": "Store.iter_batches with readahead=0",
}


def read_store(path: Path, subset: str, n: int, batch_size: int, how: str) -> float:
    """Seconds to read S1 + S2 of the first ``n`` samples of ``subset``, ``how`` in
    :data:`STORE_READERS`."""
    from sareval.evaluator.reader import BatchReader
    from sareval.store import Store

    t = time.perf_counter()
    with Store(path) as store:
        if how == "reader":
            sub = store.subset(subset)
            with BatchReader(store, sub, 0, min(n, len(sub)), batch_size,
                             sensors=("s1", "s2")) as reader:  # fmt: skip
                for _ in reader:
                    pass
        else:
            readahead = 0 if how == "iter-no-hints" else 2
            for _ in store.iter_batches(subset, batch_size, stop=n, sensors=("s1", "s2"),
                                        readahead=readahead):  # fmt: skip
                pass
    return time.perf_counter() - t


def read_tiffs(samples: list[list[Path]], *, fast_open: bool = True) -> float:
    """Seconds to open and read every file of every sample with rasterio, one file at a time;
    ``fast_open``: GDAL_DISABLE_READDIR_ON_OPEN (as sareval's readers do), else GDAL's
    defaults (as a plain ``rasterio.open`` user)."""
    import contextlib

    import rasterio

    from sareval.preprocess.tiffs import gdal_env

    t = time.perf_counter()
    with gdal_env() if fast_open else contextlib.nullcontext():
        for files in samples:
            for path in files:
                with rasterio.open(path) as src:
                    src.read()
    return time.perf_counter() - t


def compare_reads(
    store: Path, subset: str, samples: list[list[Path]], batch_size: int, repeats: int
) -> dict[str, Any]:
    """Store vs GeoTIFF reads of the same samples, ``repeats`` rounds, medians in samples/s.

    Each round: cold (the files evicted from the page cache first) store with every reader of
    :data:`STORE_READERS`, cold GeoTIFFs, then warm (an untimed read, then the timed one) store
    and GeoTIFFs, interleaved so that a change in the machine's load hits both sides alike.
    Warm is primed right before each timed read because this VM's kernel reclaims page cache
    proactively (DAMON, ``kdamond``), so data read a minute earlier may be partly gone.
    """
    n = len(samples)
    tiffs = [p for files in samples for p in files]
    times: dict[str, list[float]] = {}

    def timed(key: str, seconds: float) -> None:
        times.setdefault(key, []).append(seconds)

    for _ in range(repeats):
        for how in STORE_READERS:
            evict([store])
            timed(f"cold_store_{how}", read_store(store, subset, n, batch_size, how))
        evict(tiffs)
        timed("cold_geotiff", read_tiffs(samples))
        for how in STORE_READERS:
            read_store(store, subset, n, batch_size, how)  # untimed: loads the page cache
            timed(f"warm_store_{how}", read_store(store, subset, n, batch_size, how))
        read_tiffs(samples)
        timed("warm_geotiff", read_tiffs(samples))
        timed("warm_geotiff_default_gdal", read_tiffs(samples, fast_open=False))
    out: dict[str, Any] = {"read_samples": n, "repeats": repeats}
    for key, seconds in times.items():
        out[f"{key}_samples_per_s"] = n / statistics.median(seconds)
        out[f"{key}_samples_per_s_all"] = [round(n / s, 1) for s in seconds]
    for state in ("warm", "cold"):
        geotiff = out[f"{state}_geotiff_samples_per_s"]
        for how in STORE_READERS:
            out[f"{state}_speedup_{how}"] = out[f"{state}_store_{how}_samples_per_s"] / geotiff
    return out


def bigearthnet_part(args: argparse.Namespace) -> dict[str, Any]:
    """The same comparison on a generated BigEarthNet tree (14 single-band files a sample)."""
    from sareval.bands import BIGEARTHNET_S2_BANDS
    from sareval.preprocess.bigearthnet import preprocess_bigearthnet, s1_band_path, s2_band_path
    from sareval.preprocess.synth_bigearthnet import generate_bigearthnet
    from sareval.store import Store

    base = args.workdir / "bigearthnet"
    if not (base / "train.csv").exists():
        generate_bigearthnet(base, n_patches=args.bigearthnet_patches, size=120, seed=0)
    s2_root, s1_root = base / "BigEarthNet-v1.0", base / "BigEarthNet-S1-v1.0"
    pairs = [line.split(",") for line in (base / "train.csv").read_text().split()]
    out: dict[str, Any] = {"patches": len(pairs)}
    for compression in args.bigearthnet_compressions.split(","):
        store = args.workdir / f"ben-{compression}.h5"
        t = time.perf_counter()
        preprocess_bigearthnet(s2_root, s1_root, base / "train.csv", store, workers=args.workers,
                               compression=compression, overwrite=True, progress=False)  # fmt: skip
        seconds = time.perf_counter() - t
        n = min(args.read_samples or len(pairs), len(pairs))
        files = [
            [s2_band_path(s2_root, s2, b) for b in BIGEARTHNET_S2_BANDS]
            + [s1_band_path(s1_root, s1, b) for b in ("VV", "VH")]
            for s2, s1 in pairs[:n]
        ]
        with Store(store) as st:
            raw = st.file["s1"].nbytes + st.file["s2"].nbytes
        out[compression] = {
            "preprocess_patches_per_s": len(pairs) / seconds,
            "store_vs_raw": store.stat().st_size / raw,
            **compare_reads(store, "clear", files, args.batch_size, args.repeats),
        }
        print("bigearthnet", compression, json.dumps(rounded(out[compression])), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/sareval-preprocess-bench"))
    ap.add_argument("--patches", type=int, default=2000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--compressions", default="lzf,gzip,lz4,zstd,none")
    ap.add_argument("--subset", default="clear", help="subset read back (cloudy: s2_cloudy)")
    ap.add_argument("--read-samples", type=int, default=0, help="0: the whole subset")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3, help="read rounds; medians are reported")
    ap.add_argument("--reuse-stores", action="store_true", help="only re-measure the reads")
    ap.add_argument("--bigearthnet-patches", type=int, default=0, help="0: skip BigEarthNet")
    ap.add_argument("--bigearthnet-compressions", default="none,lzf")
    args = ap.parse_args()

    from sareval.store import Store

    args.workdir.mkdir(parents=True, exist_ok=True)
    gen = generate(args.workdir, args.patches, args.size)
    root, cr = args.workdir / "tree" / "sen12ms", args.workdir / "tree" / "sen12mscr"
    results: dict[str, Any] = {
        "machine": machine(),
        "command": " ".join(["python", *sys.argv]),
        "tree": {"patches": gen["n_patches"], "cloudy": gen["n_cloudy"], "size": args.size,
                 "geotiff_bytes_sen12ms": tree_bytes(root), "geotiff_bytes_cr": tree_bytes(cr)},
        "runs": {},
    }  # fmt: skip
    previous_path = args.workdir / "results.json"
    previous = json.loads(previous_path.read_text())["runs"] if previous_path.exists() else {}
    for compression in filter(None, args.compressions.split(",")):
        if compression in ("lz4", "zstd"):
            try:
                import hdf5plugin  # noqa: F401
            except ImportError:
                print(f"skip {compression}: hdf5plugin is not importable")
                continue
        out = args.workdir / f"store-{compression}.h5"
        if args.reuse_stores and out.exists() and compression in previous:
            seconds = previous[compression]["preprocess_s"]
        else:
            seconds = run_preprocess(root, cr, out, compression, args.workers)
        with Store(out) as store:
            ids = store.ids()
            sub = store.subset(args.subset)
            raw = sum(store.file[k].nbytes for k in ("s1", "s2", "s2_cloudy"))
            sub_ids = store.ids(sub.rows[: args.read_samples or None])
            optical = sub.optical
            sample_bytes = sum(store.file[k].nbytes // len(ids) for k in ("s1", optical))
        rows = source_files(root, cr, ids, with_cloudy=True)
        read_bytes = sum(p.stat().st_size for files in rows for p in files)
        samples = []
        for i in sub_ids:
            s1, s2, *cloudy = source_files(root, cr, [i], with_cloudy=True)[0]
            samples.append([s1, cloudy[0] if optical == "s2_cloudy" else s2])
        run = {
            "preprocess_s": seconds,
            "preprocess_patches_per_s": len(ids) / seconds,
            "preprocess_geotiff_MB_per_s": read_bytes / 1e6 / seconds,
            "store_bytes": out.stat().st_size,
            "raw_array_bytes": raw,
            "store_vs_raw": out.stat().st_size / raw,
            "sample_bytes": sample_bytes,
            **compare_reads(out, args.subset, samples, args.batch_size, args.repeats),
        }
        results["runs"][compression] = run
        print(compression, json.dumps(rounded(run)), flush=True)
        (args.workdir / "results.json").write_text(json.dumps(results, indent=2))

    if args.bigearthnet_patches:
        results["bigearthnet"] = bigearthnet_part(args)
        (args.workdir / "results.json").write_text(json.dumps(results, indent=2))

    print(f"\nmachine: {results['machine']}")
    t = results["tree"]
    print(f"tree: {t['patches']} patches {args.size}x{args.size}, {t['cloudy']} cloudy; GeoTIFFs "
          f"{(t['geotiff_bytes_sen12ms'] + t['geotiff_bytes_cr']) / 1e9:.2f} GB")  # fmt: skip
    print(
        "\n| compression | preprocess patches/s (GeoTIFF MB/s) | store size / raw | reads "
        "samples/s | " + " | ".join(STORE_READERS) + " | GeoTIFF | store (reader) / GeoTIFF |"
    )
    print("|---|---|---|---|" + "---|" * len(STORE_READERS) + "---|---|")
    for name, r in results["runs"].items():
        mb = r["sample_bytes"] / 1e6
        for state in ("warm", "cold"):
            stores = " | ".join(
                f"{r[f'{state}_store_{how}_samples_per_s']:.0f}" for how in STORE_READERS
            )
            geotiff = r[f"{state}_geotiff_samples_per_s"]
            print(
                f"| {name} | {r['preprocess_patches_per_s']:.1f} "
                f"({r['preprocess_geotiff_MB_per_s']:.0f}) | {r['store_vs_raw']:.2f} | {state} | "
                f"{stores} | {geotiff:.0f} | **{r[f'{state}_speedup_reader']:.1f}x** ("
                f"{r[f'{state}_store_reader_samples_per_s'] * mb:.0f} vs {geotiff * mb:.0f} MB/s) |"
            )
    for name, r in results.get("bigearthnet", {}).items():
        if isinstance(r, dict):
            print(
                f"bigearthnet {name}: store/raw {r['store_vs_raw']:.2f}, warm "
                f"{r['warm_speedup_reader']:.1f}x, cold {r['cold_speedup_reader']:.1f}x"
            )


if __name__ == "__main__":
    main()
