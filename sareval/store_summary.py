"""A store's summary as text (what ``sareval info store.h5`` prints).

Sections: file and size; dataset, split, samples, image size, default task; provenance
(creator, created, source, options of note); bands per sensor with dtype; label sets; subsets
with size, optical source and mean cloud cover; non-finite values per sensor (S1 may hold NaN,
kept raw); the cloud-cover method and a histogram in 10 % bins (``[0, 10) ... [90, 100]`` %).
"""

from __future__ import annotations

import numpy as np

from sareval.store import Store

BAR_WIDTH = 30


def cloud_cover_histogram(cover: np.ndarray) -> np.ndarray:
    """Counts of the finite values of ``cover`` in 10 bins of 0.1 (1.0 goes to the last bin)."""
    c = np.asarray(cover, dtype=np.float32)
    c = c[np.isfinite(c)]
    # edges in float32, as the store's cover: a cover >= 0.9 (the very-cloudy rule) is in bin 9
    edges = (np.arange(1, 10) / 10).astype(np.float32)
    return np.bincount(np.searchsorted(edges, c, side="right"), minlength=10)


def _size_text(n_bytes: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n_bytes < 1000 or unit == "GB":
            return f"{n_bytes:.0f} {unit}" if unit == "B" else f"{n_bytes:.1f} {unit}"
        n_bytes /= 1000  # type: ignore[assignment]
    raise AssertionError


def _field(key: str, value: object) -> str:
    return f"{key:<14}{value}"


def store_summary(store: Store) -> str:
    """The summary text of an open store (see module doc)."""
    attr = store.attribute
    h, w = store.image_size
    size = _size_text(store.path.stat().st_size)
    lines = [
        _field("store", f"{store.path} ({size})"),
        _field("dataset", f"{store.dataset}, split {store.split}: {store.n_samples} samples"),
        _field("image size", f"{h}x{w} px"),
        _field("default task", attr("default_task") or "?"),
        _field("created", f"{attr('created') or '?'} by {attr('creator') or '?'}"),
        _field("source", attr("source_root") or "?"),
    ]
    for key in (
        "labels_source",
        "cloudy_source",
        "resampling",
        "unlabelled_skipped",
        "flags_absent",
    ):
        if (value := attr(key)) is not None:
            lines.append(_field(key.replace("_", " "), value))
    options = store.options
    if "compression" in options:
        chunk = options.get("chunk_rows")
        lines.append(_field("compression", f"{options['compression']} ({chunk} samples a chunk)"))

    lines.append("bands")
    for sensor in store.image_datasets:
        extra = ""
        if sensor == "s2_cloudy":
            n_avail = int(store.cloudy_available(np.arange(store.n_samples)).sum())
            extra = f", available for {n_avail} of {store.n_samples}"
        bands = ", ".join(store.bands(sensor))
        lines.append(f"  {sensor:<10} {store.dtype_of(sensor)} [{bands}]{extra}")

    lines.append("labels")
    for spec in store.label_sets.values():
        thr = f", threshold {spec.threshold:g}" if spec.threshold is not None else ""
        lines.append(
            f"  {spec.name:<18} {spec.kind:<9} {len(spec.class_names)} classes ({spec.task}{thr})"
        )

    cover = store.cloud_cover()
    # cloud_cover describes the cloudy optical version: s2_cloudy where the store has one
    # (SEN12MS-CR), else s2 itself (BigEarthNet's cloudy-list patches)
    cloudy_source = "s2_cloudy" if store.has_cloudy else "s2"
    lines.append(
        "subsets       name             size  optical    mean cloud cover of what it reads"
    )
    for sub in store.subsets.values():
        cc = cover[sub.rows] if sub.optical == cloudy_source else np.zeros(0)
        known = cc[np.isfinite(cc)]
        mean = f"{known.mean():.1%} ({len(known)} known)" if len(known) else "-"
        lines.append(f"  {sub.name:<26}{len(sub):>6}  {sub.optical:<10} {mean}")
        if sub.description:
            lines.append(f"  {'':<26}        {sub.description}")

    lines.append("non-finite values (NaN/Inf, kept raw)")
    for sensor in store.image_datasets:
        rows_hit = store.nonfinite_rows(sensor)
        lines.append(f"  {sensor:<10} {store.nonfinite_count(sensor)} values in {rows_hit} samples")

    lines.append(_field("cloud cover", f"method: {attr('cloud_cover_method') or 'none'}"))
    hist = cloud_cover_histogram(cover)
    n_known = int(hist.sum())
    if n_known == 0:
        lines.append("  unknown for every sample")
    else:
        lines.append(f"  known for {n_known} of {store.n_samples} samples")
        peak = max(int(hist.max()), 1)
        for b, count in enumerate(hist):
            hi = "100]" if b == 9 else f"{10 * b + 10:>3})"
            bar = "#" * round(BAR_WIDTH * int(count) / peak)
            lines.append(f"  [{10 * b:>3}, {hi} % {int(count):>7}  {bar}".rstrip())
    return "\n".join(lines)
