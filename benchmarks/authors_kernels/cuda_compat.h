// The CUDA names the authors' kernels and our driver use, mapped onto HIP-CPU (ROCm/HIP-CPU).
#pragma once
#include <hip/hip_runtime.h>

#include <algorithm>
#include <cmath>

#define cudaError_t hipError_t
#define cudaSuccess hipSuccess
#define cudaMalloc hipMalloc
#define cudaFree hipFree
#define cudaMemcpy hipMemcpy
#define cudaMemcpyHostToDevice hipMemcpyHostToDevice
#define cudaMemcpyDeviceToHost hipMemcpyDeviceToHost
#define cudaMemset hipMemset
#define cudaStreamSynchronize hipStreamSynchronize
#define cudaDeviceSynchronize hipDeviceSynchronize
#define cudaGetLastError hipGetLastError

// CUDA's intrinsic: on the GPU (and everywhere under their --use_fast_math) a fast approximation
// (ex2.approx, ~2 ulp); here the C library's expf. A precision difference, not a rule.
inline float __expf(float x) noexcept { return std::exp(x); }

// CUDA's device overloads of max/min for int, which the kernels call unqualified.
using std::max;
using std::min;
