"""Markdown tables from the benchmarks' JSON, so documentation tables are generated, not typed.

    python benchmarks/table.py benchmarks/results/compare.json     # prints the table
    python benchmarks/table.py --docs                              # refreshes docs/benchmarks.md

``--docs`` rewrites the blocks between ``<!-- table:NAME -->`` and ``<!-- end -->`` in
docs/benchmarks.md from ``benchmarks/results/compare.json`` (NAME ``models``) and
``benchmarks/results/latest.json`` (NAME ``ops``, from ``benchmarks/run.py``).

``compare_markdown`` turns the JSON of ``benchmarks/compare.py`` into one table per load
condition: a row per (model, metric), a column per runtime, and cconv's ratio to the best peer
(the faster of ONNX Runtime and OpenVINO, or the fastest peer present, for inference; the
faster of Keras and PyTorch for training; above 1 means cconv is faster). When the JSON gives
the models' FLOPs per image (``models``), each cell is followed by its GFLOP/s in parentheses.
With a loaded run, a last table gives the share of quiet throughput each runtime kept.
"""
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(os.path.dirname(HERE), "docs", "benchmarks.md")

RUNTIME_NAMES = {"cconv": "cconv", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO",
                 "torch": "PyTorch", "keras": "Keras"}
METRICS = [("one_image_us", "one image, us", False), ("batch_images_s", "batch {batch}, images/s",
                                                        True),
           ("train_images_s", "training (Adam, batch 64), images/s", True)]
INFERENCE_PEERS = ["onnxruntime", "openvino", "torch", "keras"]
INFERENCE_ENGINES = ["onnxruntime", "openvino"]
TRAINING_PEERS = ["torch", "keras"]
# training does about 3x the forward FLOPs (forward, input gradient, weight gradient)
FLOP_FACTOR = {"one_image_us": 1, "batch_images_s": 1, "train_images_s": 3}


def _fmt(value, higher_is_better, flops=None, key=None):
    """A cell; with the model's forward FLOPs per image, GFLOP/s follow in parentheses."""
    if value is None:
        return "-"
    cell = f"{value:,.0f}" if higher_is_better or value >= 100 else f"{value:,.1f}"
    if flops:
        images_s = value if higher_is_better else 1e6 / value
        cell += f" ({gflops(images_s, flops, key):,.1f})"
    return cell


def gflops(images_s, flops, key):
    """GFLOP/s of ``images_s`` images per second for a model of ``flops`` per image."""
    return images_s * flops * FLOP_FACTOR[key] / 1e9


def _speedup(ours, theirs, higher_is_better):
    return ours / theirs if higher_is_better else theirs / ours


def _best_peer(per_rt, key, higher_is_better):
    """The best peer for ``key``: for inference the faster of ONNX Runtime and OpenVINO when
    either is present, else the fastest peer; for training the faster of PyTorch and Keras."""
    peers = INFERENCE_PEERS if key != "train_images_s" else TRAINING_PEERS
    present = [p for p in peers if key in per_rt.get(p, {})]
    if not present:
        return None
    engines = [p for p in present if p in INFERENCE_ENGINES]
    if key != "train_images_s" and engines:
        present = engines
    pick = max if higher_is_better else min
    return pick(present, key=lambda p: per_rt[p][key])


def _label(label, info, key):
    label = label.format(batch=info.get("batch", 256))
    return label + " (GFLOP/s)" if info.get("flops") and key in FLOP_FACTOR else label


def condition_table(summary, runtimes, models=None):
    """One row per (model, metric); ``models`` (the JSON's ``models``: FLOPs per image and
    batch size per model, absent in older JSON) adds GFLOP/s and the batch size."""
    models = models or {}
    cols = [RUNTIME_NAMES[r] for r in runtimes]
    lines = ["| model | metric | " + " | ".join(cols) + " | cconv vs best peer |",
             "|---|---|" + "---|" * len(cols) + "---|"]
    for model, per_rt in summary.items():
        info = models.get(model, {})
        for key, label, hib in METRICS:
            if not any(key in per_rt.get(r, {}) for r in runtimes):
                continue
            label = _label(label, info, key)
            cells = [_fmt(per_rt.get(r, {}).get(key), hib, info.get("flops"), key)
                     for r in runtimes]
            peer = _best_peer(per_rt, key, hib)
            ratio = "-"
            if peer and key in per_rt.get("cconv", {}):
                ratio = (f"{_speedup(per_rt['cconv'][key], per_rt[peer][key], hib):.2f}x "
                         f"({RUNTIME_NAMES[peer]})")
            lines.append(f"| {model} | {label} | " + " | ".join(cells) + f" | {ratio} |")
    return "\n".join(lines)


def kept_table(quiet, loaded, runtimes, models=None):
    """Share of quiet throughput kept under load (latency: quiet / loaded)."""
    models = models or {}
    cols = [RUNTIME_NAMES[r] for r in runtimes]
    lines = ["| model | metric | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    for model in quiet:
        for key, label, hib in METRICS:
            label = label.format(batch=models.get(model, {}).get("batch", 256))
            cells = []
            for r in runtimes:
                q = quiet[model].get(r, {}).get(key)
                ld = loaded.get(model, {}).get(r, {}).get(key)
                cells.append("-" if q is None or ld is None else
                             f"{100 * _speedup(ld, q, hib):.0f}%")
            if any(c != "-" for c in cells):
                lines.append(f"| {model} | {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_markdown(results):
    """The whole report for one ``benchmarks/compare.py`` run, as Markdown."""
    runtimes = results["runtimes"]
    head = (f"{results.get('date', '')}, {results.get('machine', '')}, "
            f"{results['threads']} threads, median of {results['rounds']} rounds, "
            f"load average before: {results.get('load_before', float('nan')):.2f}")
    models = results.get("models", {})
    parts = [head, "", "Quiet machine:", "", condition_table(results["quiet"], runtimes, models)]
    if "loaded" in results:
        parts += ["", "One busy process per core:", "",
                  condition_table(results["loaded"], runtimes, models), "",
                  "Share of quiet speed kept under load:", "",
                  kept_table(results["quiet"], results["loaded"], runtimes, models)]
    if any(m.get("flops") for m in models.values()):
        parts += ["", "GFLOP/s in parentheses: 2 x the multiply-adds of the convolutions and "
                  "Dense layers per image (" + ", ".join(
                      f"{name} {m['flops'] / 1e6:,.1f} MFLOP" for name, m in models.items()
                      if m.get("flops")) + ") times images/s; training counts 3x the forward "
                  "FLOPs. Inference peers: the faster of ONNX Runtime and OpenVINO."]
    agree = []
    for model, per_rt in results["quiet"].items():
        diffs = [f"{RUNTIME_NAMES[r]} {row['max_abs_diff_vs_cconv']:.1e}"
                 for r, row in per_rt.items() if r != "cconv" and "max_abs_diff_vs_cconv" in row]
        if diffs:
            agree.append(f"{model}: " + ", ".join(diffs))
    if agree:
        parts += ["", "Largest output difference from cconv on 8 images: " + "; ".join(agree)]
    return "\n".join(parts) + "\n"


def ops_markdown(results):
    """The op-level table of ``benchmarks/run.py``'s JSON: peer time / cconv time per phase."""
    peers = [fw for fw in results.get("frameworks", []) if fw in ("tensorflow", "torch")]
    cases, order = {}, []
    for row in results.get("ops", []) + results.get("pool", []):
        if row["case"] not in cases:
            order.append(row["case"])
        cases.setdefault(row["case"], {})[row["phase"]] = row
    phases = [ph for ph in ("forward", "forward+backward")
              if any(ph in c for c in cases.values())]
    cols = [f"{fw} / cconv, {ph}" for ph in phases for fw in peers]
    when = ", ".join(x for x in (
        results.get("date"),
        f"median of {results['rounds']} rounds" if "rounds" in results else None,
        f"load average before: {results['load_before']:.2f}"
        if results.get("load_before") is not None else None) if x)
    lines = [f"{when + ', ' if when else ''}{results.get('threads', '?')} threads; ratios above 1 "
             "mean cconv is faster.", "",
             "| case | " + " | ".join(cols) + " | cconv GFLOP/s (forward) |",
             "|---|" + "---|" * (len(cols) + 1)]
    for case in order:
        cells = []
        for ph in phases:
            for fw in peers:
                row = cases[case].get(ph, {})
                ok = fw + "_ms" in row and row.get("cconv_ms")
                cells.append(f"{row[fw + '_ms'] / row['cconv_ms']:.2f}x" if ok else "-")
        gf = next((r["cconv_gflops"] for r in cases[case].values() if "cconv_gflops" in r), None)
        gf = "-" if gf is None else f"{gf:.0f}"
        lines.append(f"| {case} | " + " | ".join(cells) + f" | {gf} |")
    return "\n".join(lines) + "\n"


def refresh_docs(doc=DOC):
    """Regenerate every ``<!-- table:NAME -->`` block of ``doc`` whose JSON exists."""
    sources = {"models": ("compare.json", compare_markdown), "ops": ("latest.json", ops_markdown)}
    with open(doc) as f:
        text = f.read()
    for name, (fname, render) in sources.items():
        path = os.path.join(HERE, "results", fname)
        if not os.path.exists(path):
            print(f"{path} missing: table '{name}' left as it was", file=sys.stderr)
            continue
        with open(path) as f:
            table = render(json.load(f))
        pattern = re.compile(rf"(<!-- table:{name} -->\n).*?(<!-- end -->)", re.S)
        text = pattern.sub(lambda m, t=table: m.group(1) + t + m.group(2), text)
    with open(doc, "w") as f:
        f.write(text)


if __name__ == "__main__":
    if sys.argv[1:] == ["--docs"]:
        refresh_docs()
    else:
        with open(sys.argv[1]) as f:
            print(compare_markdown(json.load(f)))
