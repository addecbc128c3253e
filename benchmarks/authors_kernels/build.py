"""Build the authors' MLP training kernels for the CPU (HIP-CPU), without committing their code.

    python benchmarks/authors_kernels/build.py [--authors PATH] [--rev REV] [--hipcpu PATH] [--out DIR]

--authors (env AUTHORS_REPO): jinyyy666/mm-bp-snn, a checkout or a bare git directory (then read at
--rev, default HEAD; bd31fe2 is the code of their logged runs). --hipcpu (env HIPCPU_DIR): an export
of ROCm/HIP-CPU (its include/ is used). Needs g++ >= 9 (C++17 parallel algorithms) and TBB
(libtbb-dev). Writes into --out (default benchmarks/authors_kernels/build/, git-ignored):

    authors_kernels.cu.inc   the __global__/__device__ functions of KERNELS, cut verbatim from the
                             authors' files (the only rewrite: ``extern __shared__ T x[];`` becomes
                             HIP-CPU's ``HIP_DYNAMIC_SHARED(T, x)``)
    authors_step             driver.cpp compiled against them (see driver.cpp for its protocol)

Nothing of the authors' logic is re-typed here: a kernel missing from their files, or found twice
where one is expected, stops the build.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent

# (file, function name, a fragment of the wanted overload's parameter list or None)
KERNELS: list[tuple[str, str, str | None]] = [
    ("common/cuBase.cu", "d_Spiking_accumulate_effect", None),
    ("common/cuBase.cu", "g_adam_vecAdd", "float* g1_w"),  # the batch-of-one overload Spiking::updateWeight calls
    ("common/cuBase.cu", "g_preDeltaFormat", None),
    ("common/cuBase.cu", "g_convert_spiketimes", None),
    ("common/cuBase.cu", "g_convert_firecounts", None),
    ("common/cuBase.cu", "g_cast_bool_2_float", None),
    ("common/cuBase.cu", "g_transform_2_batch", None),
    ("common/cuBase.cu", "g_response_2_spiketime", None),
    ("common/cuBase.cu", "g_divide_by_threshold", None),
    ("layers/DataLayerSpiking.cu", "g_DataLayerSpiking_feedforward", None),
    ("layers/DataLayerSpiking.cu", "g_DataLayerSpiking_get_fireCount", None),
    ("layers/Spiking.cu", "d_Spiking_accumulate_spikes", None),
    ("layers/Spiking.cu", "g_getCost_output", None),
    ("layers/Spiking.cu", "g_getDelta_output", None),
    ("layers/Spiking.cu", "g_boostWeight_output", None),
    ("layers/Spiking.cu", "g_getLateralFactor_output", None),
    ("layers/Spiking.cu", "g_modifySpikes", None),
    ("layers/Spiking.cu", "g_Spiking_feedforward", None),
    ("layers/Spiking.cu", "g_Spiking_synaptic_effect", None),
    ("layers/Spiking.cu", "g_Spiking_wgrad_sideEffect", None),
    ("layers/Spiking.cu", "g_Spiking_wgrad_spiketime", None),
    ("layers/Spiking.cu", "g_Spiking_calSquareSum", None),
    ("layers/Spiking.cu", "g_Spiking_gradAdd", None),
    ("net_spiking.cu", "g_getPredict", None),
]
# the prototypes the kernels call each other through (their files declare them the same way)
PROTOTYPES = """
__device__ float d_Spiking_accumulate_effect(int* output_time, int* input_time, int n_ospikes, int n_ispikes,
    int o_idx, int i_idx, int outputDim, int inputDim, int endTime, int T_REFRAC, float TAU_M, float TAU_S);
__device__ float d_Spiking_accumulate_spikes(int inputSize, int outputSize, float* input_resp, bool* output,
    int o_idx, float* weights, float* weights_lat, float* biases, int t, int dummyFreq, int endTime);
"""
SHARED = re.compile(r"extern\s+__shared__\s+(\w+)\s+(\w+)\s*\[\s*\]\s*;")


def read_source(authors: Path, rev: str, path: str) -> str:
    if (authors / path).is_file():
        return (authors / path).read_text()
    return subprocess.run(["git", "-C", str(authors), "show", f"{rev}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def definitions(text: str, name: str) -> list[str]:
    """Every definition (with a body, not a prototype) of function ``name`` in ``text``, verbatim."""
    found = []
    for match in re.finditer(r"(?:__global__|__device__)\s+\w+\s+" + re.escape(name) + r"\s*\(", text):
        start = text.rfind("\n", 0, match.start()) + 1
        depth, i = 0, match.end() - 1
        while True:  # the parameter list
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
            if depth == 0:
                break
        rest = text[i:].lstrip()
        if not rest.startswith("{"):
            continue  # a prototype
        i = text.index("{", i)
        depth = 0
        while True:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
            if depth == 0:
                break
        found.append(text[start:i])
    return found


def extract(authors: Path, rev: str) -> str:
    sources: dict[str, str] = {}
    parts = [f"// cut from {authors} @ {rev} by benchmarks/authors_kernels/build.py; do not commit\n", PROTOTYPES]
    for path, name, overload in KERNELS:
        text = sources.setdefault(path, read_source(authors, rev, path))
        bodies = [b for b in definitions(text, name) if overload is None or overload in b.split("{", 1)[0]]
        if len(bodies) != 1:
            raise SystemExit(f"{path}: {len(bodies)} definitions of {name} (overload {overload!r}); expected 1")
        body = SHARED.sub(lambda m: f"HIP_DYNAMIC_SHARED({m.group(1)}, {m.group(2)})", bodies[0])
        parts.append(f"\n// ---- {path}: {name}\n{body}\n")
    return "".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--authors", type=Path, default=os.environ.get("AUTHORS_REPO"))
    parser.add_argument("--rev", default=os.environ.get("AUTHORS_REV", "HEAD"))
    parser.add_argument("--hipcpu", type=Path, default=os.environ.get("HIPCPU_DIR"))
    parser.add_argument("--out", type=Path, default=HERE / "build")
    parser.add_argument("--cxx", default=os.environ.get("CXX", "g++"))
    args = parser.parse_args()
    if args.authors is None or args.hipcpu is None:
        raise SystemExit("give --authors (or AUTHORS_REPO) and --hipcpu (or HIPCPU_DIR)")
    if not (args.hipcpu / "include" / "hip" / "hip_runtime.h").is_file():
        raise SystemExit(f"{args.hipcpu}: no include/hip/hip_runtime.h (an export of ROCm/HIP-CPU)")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "authors_kernels.cu.inc").write_text(extract(args.authors, args.rev))
    command = [args.cxx, "-std=c++17", "-O2", "-fno-fast-math", "-w", f"-I{args.hipcpu / 'include'}", f"-I{args.out}",
               f"-I{HERE}", str(HERE / "driver.cpp"), "-o", str(args.out / "authors_step"), "-ltbb", "-lpthread"]
    print(" ".join(command), flush=True)
    subprocess.run(command, check=True)
    print(f"built {args.out / 'authors_step'}", file=sys.stderr)


if __name__ == "__main__":
    main()
