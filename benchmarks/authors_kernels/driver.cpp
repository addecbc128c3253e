// The authors' per-sample training step of the MLP (784-800-10), run with their own kernels on HIP-CPU.
//
// The kernels are cut from jinyyy666/mm-bp-snn by build.py into authors_kernels.cu.inc; this file is
// the host side only, and it replays, launch for launch (same grids, blocks, shared memory, order),
// what their host code does for one sample at batch 1:
//   net_spiking.cu getSpikingNetworkCost: feedforward of every layer (DataLayerSpiking::feedforward,
//   Spiking::feedforward), outputPredict (g_getPredict), then for output, then hidden:
//   Spiking::backpropagation, Spiking::getGrad, Spiking::updateWeight (Adam, b1_t *= 0.9f, b2_t *= 0.999f).
// The one stand-in: cuBLAS matrixMul (z = x * y, row-major, cuMatrix.cpp) is a plain loop.
//
// Usage: authors_step [--key value ...]   (keys: see `config` below; defaults are their MNIST config)
// then commands on stdin, one per line, answered on stdout with one line "ok ..." (or "error ..."):
//   load DIR      read the state: DIR/{w,g1,g2}_{hidden,output}.f32 (row-major outputSize x inputSize,
//                 float32) and DIR/adam_t.f32 (4 floats: b1_t, b2_t of hidden, then of output)
//   step RASTER LABEL WEIGHT OUT
//                 train on one sample: RASTER is endTime x inputSize uint8 (0/1, t-major), LABEL its
//                 class, WEIGHT its boosting weight; writes into OUT: w_{hidden,output}.f32 after the
//                 update, wgrad_{hidden,output}.f32 (the gradient Adam got, penalty included),
//                 fire_{hidden,output}.i32 (counts of the forward pass), fire_output_mod.i32 (after
//                 g_modifySpikes), delta_{hidden,output}.f32 (curDelta after g_divide_by_threshold),
//                 lateral.f32 (lateral factors), cost.f32; answers "ok PREDICTED_CLASS"
//   save DIR      write the state as load reads it
//   quit
#include "cuda_compat.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>
#include <xmmintrin.h>

#include "authors_kernels.cu.inc"

namespace {

std::map<std::string, double> config = {
    {"input", 784}, {"hidden", 800}, {"output", 10}, {"end_time", 400},
    {"vth_hidden", 20}, {"vth_output", 8}, {"t_ref", 2}, {"tau_m", 64}, {"tau_s", 8},
    {"lambda", 10}, {"beta", 0.04}, {"weight_limit", 8}, {"lr", 1e-3},
    {"desired", 35}, {"undesired", 5}, {"margin", 5}, {"lateral", 1}, {"dummy_freq", 100000},
    {"ftz", 0},  // 1: flush denormals to zero (FTZ + DAZ), as their build's --use_fast_math (-ftz=true) does
};

void check(hipError_t status, const char* what) {
    if (status != hipSuccess) {
        std::fprintf(stderr, "%s: HIP error %d\n", what, int(status));
        std::exit(2);
    }
}

template <typename T> T* device(std::size_t n) {
    T* p = nullptr;
    check(cudaMalloc(reinterpret_cast<void**>(&p), n * sizeof(T)), "cudaMalloc");
    check(cudaMemset(p, 0, n * sizeof(T)), "cudaMemset");
    return p;
}

template <typename T> void read_file(const std::string& path, T* dev, std::size_t n) {
    std::unique_ptr<T[]> buffer(new T[n]);
    T* host_data = buffer.get();
    std::ifstream in(path, std::ios::binary);
    if (!in.read(reinterpret_cast<char*>(host_data), n * sizeof(T)))
        throw std::runtime_error("cannot read " + std::to_string(n) + " values from " + path);
    check(cudaMemcpy(dev, host_data, n * sizeof(T), cudaMemcpyHostToDevice), "cudaMemcpy");
}

template <typename T> void write_file(const std::string& path, const T* dev, std::size_t n) {
    std::vector<T> host(n);
    check(cudaMemcpy(host.data(), dev, n * sizeof(T), cudaMemcpyDeviceToHost), "cudaMemcpy");
    std::ofstream out(path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(host.data()), n * sizeof(T));
    if (!out) throw std::runtime_error("cannot write " + path);
}

// seconds per kernel (from the previous sync to this one), printed on quit when AUTHORS_TIMING is set
std::map<std::string, double> timing;
auto last_sync = std::chrono::steady_clock::now();

void sync(const char* what) {
    check(cudaStreamSynchronize(0), what);
    auto now = std::chrono::steady_clock::now();
    timing[what] += std::chrono::duration<double>(now - last_sync).count();
    last_sync = now;
}

// cuMatrix.cpp matrixMul: z = x * y for row-major x (m x k), y (k x n), z (m x n); cuBLAS there.
// Each z[r][c] is summed over i in increasing order (cuBLAS's order is its own: a rounding difference).
void matrixMul(const float* x, const float* y, float* z, int m, int k, int n) {
    for (int r = 0; r < m; ++r) {
        float* row = z + std::size_t(r) * n;
        std::fill(row, row + n, 0.0f);
        for (int i = 0; i < k; ++i) {
            const float a = x[std::size_t(r) * k + i];
            const float* yi = y + std::size_t(i) * n;
            for (int c = 0; c < n; ++c) row[c] += a * yi[c];
        }
    }
}

// The layer's buffers and Spiking's members (layers/Spiking.cu, Spiking::Spiking), batch 1.
struct Layer {
    std::string name;
    int inputSize, outputSize, endTime;
    float threshold;
    bool is_output;
    // from the layer below
    bool* inputs;
    int* inputs_time;
    int* preFireCount;
    float* preDelta;  // NULL for the first layer (its input is "data")
    // own
    bool* outputs;
    int* outputs_time;
    int* fireCount;
    float *inputs_float, *inputs_resp_tmp, *inputs_resp;
    int *inputs_time_format, *preFireCount_format;
    float *preDelta_format = nullptr;
    float *curDelta, *weightSqSum, *accEffect, *sideEffect, *effectRatio;
    float *w, *b, *wgrad, *wgradTmp, *g1_w, *g2_w;
    float* w_laterial = nullptr;
    float* lateralFactor = nullptr;
    float *groundTruth = nullptr, *cost = nullptr;
    float b1_t = 0.9f, b2_t = 0.999f;

    Layer(std::string name_, int in, int out, int T, float vth, bool output, bool* in_spikes, int* in_time,
          int* in_count, float* pre_delta)
        : name(std::move(name_)), inputSize(in), outputSize(out), endTime(T), threshold(vth), is_output(output),
          inputs(in_spikes), inputs_time(in_time), preFireCount(in_count), preDelta(pre_delta) {
        outputs = device<bool>(std::size_t(out) * T);
        outputs_time = device<int>(std::size_t(out) * T);
        fireCount = device<int>(out);
        inputs_float = device<float>(std::size_t(in) * T);
        inputs_resp_tmp = device<float>(std::size_t(out) * T);
        inputs_resp = device<float>(std::size_t(out) * T);
        inputs_time_format = device<int>(std::size_t(in) * T);
        preFireCount_format = device<int>(in);
        if (preDelta != nullptr) preDelta_format = device<float>(in);
        curDelta = device<float>(out);
        weightSqSum = device<float>(out);
        accEffect = device<float>(std::size_t(out) * in);
        sideEffect = device<float>(out);
        effectRatio = device<float>(std::size_t(out) * in);  // EFFECT_RATIO = true
        w = device<float>(std::size_t(out) * in);
        b = device<float>(out);
        wgrad = device<float>(std::size_t(out) * in);
        wgradTmp = device<float>(std::size_t(out) * in);
        g1_w = device<float>(std::size_t(out) * in);
        g2_w = device<float>(std::size_t(out) * in);
        if (output) {
            // laterialType = LOCAL_INHIBITION: Spiking::initLocalInhibition, -strength off the diagonal
            w_laterial = device<float>(std::size_t(out) * out);
            std::vector<float> lat(std::size_t(out) * out, 0.0f);
            for (int i = 0; i < out; ++i)
                for (int j = 0; j < out; ++j)
                    if (i != j) lat[i * out + j] = -1 * float(config["lateral"]);
            check(cudaMemcpy(w_laterial, lat.data(), lat.size() * sizeof(float), cudaMemcpyHostToDevice), "lat");
            lateralFactor = device<float>(out);
            groundTruth = device<float>(out);
            cost = device<float>(1);
        }
    }

    int T_REFRAC() const { return int(config["t_ref"]); }
    float TAU_M() const { return float(config["tau_m"]); }
    float TAU_S() const { return float(config["tau_s"]); }

    // Spiking::feedforward
    void feedforward() {
        const int batch = 1;
        hipLaunchKernelGGL(g_cast_bool_2_float, dim3(batch, endTime), dim3(min(1024, inputSize)), 0, 0, inputs,
                           endTime, inputSize, endTime * inputSize, 1, batch, inputs_float);
        sync("g_cast_bool_2_float");
        matrixMul(w, inputs_float, inputs_resp_tmp, outputSize, inputSize, endTime * batch);
        sync("matrixMul (feedforward)");
        hipLaunchKernelGGL(g_transform_2_batch, dim3(batch, outputSize), dim3(min(1024, endTime)), 0, 0,
                           inputs_resp_tmp, endTime, outputSize, batch, inputs_resp);
        sync("g_transform_2_batch");
        hipLaunchKernelGGL(g_convert_spiketimes, dim3(batch, endTime), dim3(min(1024, inputSize)), 0, 0, inputs_time,
                           endTime, inputSize, inputSize * endTime, 1, batch, inputs_time_format);
        sync("g_convert_spiketimes");
        hipLaunchKernelGGL(g_convert_firecounts, dim3(batch), dim3(min(1024, inputSize)), 0, 0, preFireCount,
                           batch * inputSize, inputSize, inputSize, 1, batch, preFireCount_format);
        sync("g_convert_firecounts");
        hipLaunchKernelGGL(g_Spiking_feedforward, dim3(batch), dim3(min(1024, outputSize)), 0, 0, inputs_resp, w,
                           w_laterial, b, outputs, fireCount, inputSize, outputSize, endTime, threshold,
                           int(config["dummy_freq"]), T_REFRAC(), TAU_M(), TAU_S());
        sync("g_Spiking_feedforward");
        hipLaunchKernelGGL(g_response_2_spiketime, dim3(batch, 1), dim3(min(outputSize, 1024)), 0, 0, outputs,
                           outputs_time, batch * outputSize * endTime, outputSize, endTime);
        sync("g_response_2_spiketime");
    }

    // Spiking::backpropagation
    void backpropagation(int* predict, float* sample_weights) {
        const int batch = 1;
        if (is_output) {
            float undesired = float(config["undesired"]), desired = float(config["desired"]);
            float margin = float(config["margin"]);
            hipLaunchKernelGGL(g_getCost_output, dim3(1), dim3(256), sizeof(float) * 256, 0, fireCount, groundTruth,
                               cost, predict, batch, outputSize, undesired, desired, margin);
            sync("g_getCost_output");
            hipLaunchKernelGGL(g_getDelta_output, dim3(1), dim3(256), 0, 0, curDelta, fireCount, groundTruth,
                               batch * outputSize, margin);
            sync("g_getDelta_output");
            hipLaunchKernelGGL(g_boostWeight_output, dim3(batch), dim3(outputSize), 0, 0, curDelta, sample_weights,
                               batch * outputSize);
            sync("g_boostWeight_output");
            int threads = min(outputSize, 1024);
            hipLaunchKernelGGL(g_getLateralFactor_output, dim3(batch, outputSize), dim3(threads),
                               sizeof(float) * threads, 0, outputs_time, fireCount, float(config["lateral"]), predict,
                               lateralFactor, threshold, outputSize, endTime, T_REFRAC(), TAU_M(), TAU_S());
            sync("g_getLateralFactor_output");
            hipLaunchKernelGGL(g_modifySpikes, dim3(batch), dim3(min(outputSize, 1024)), 0, 0, outputs, predict,
                               fireCount, int(config["desired"]), endTime, outputSize);
            sync("g_modifySpikes");
            hipLaunchKernelGGL(g_response_2_spiketime, dim3(batch, 1), dim3(min(outputSize, 1024)), 0, 0, outputs,
                               outputs_time, batch * outputSize * endTime, outputSize, endTime);
            sync("g_response_2_spiketime");
        }
        hipLaunchKernelGGL(g_Spiking_synaptic_effect, dim3(batch, inputSize), dim3(min(1024, outputSize)), 0, 0,
                           inputs_time_format, outputs_time, preFireCount_format, fireCount, w, accEffect,
                           effectRatio, inputSize, outputSize, endTime, T_REFRAC(), TAU_M(), TAU_S());
        sync("g_Spiking_synaptic_effect");
        hipLaunchKernelGGL(g_divide_by_threshold, dim3(batch, 1), dim3(min(1024, outputSize)), 0, 0, curDelta,
                           batch * outputSize, outputSize, threshold);
        sync("g_divide_by_threshold");
        if (preDelta != nullptr) {
            matrixMul(curDelta, effectRatio, preDelta_format, batch, outputSize, inputSize);
            hipLaunchKernelGGL(g_preDeltaFormat, dim3(batch), dim3(min(512, inputSize)), 0, 0, preDelta_format,
                               preDelta, batch, inputSize, 1);
            sync("g_preDeltaFormat");
        }
    }

    // Spiking::getGrad
    void getGrad() {
        const int batch = 1;
        dim3 thread = dim3(min(1024, inputSize));
        dim3 block = dim3(batch, outputSize);
        hipLaunchKernelGGL(g_Spiking_wgrad_sideEffect, block, thread, sizeof(float) * min(1024, inputSize), 0, w,
                           fireCount, accEffect, threshold, inputSize, outputSize, sideEffect);
        sync("g_Spiking_wgrad_sideEffect");
        hipLaunchKernelGGL(g_Spiking_wgrad_spiketime, block, thread, 0, 0, sideEffect, accEffect, curDelta,
                           lateralFactor, wgradTmp, inputSize, outputSize);
        sync("g_Spiking_wgrad_spiketime");
        hipLaunchKernelGGL(g_Spiking_calSquareSum, dim3(outputSize), dim3(min(inputSize, 1024)),
                           sizeof(float) * min(inputSize, 1024), 0, w, weightSqSum, outputSize, inputSize,
                           float(config["weight_limit"]));
        sync("g_Spiking_calSquareSum");
        hipLaunchKernelGGL(g_Spiking_gradAdd, dim3(outputSize * inputSize), dim3(batch), sizeof(float) * batch, 0,
                           wgradTmp, wgrad, w, weightSqSum, batch, float(config["lambda"]), float(config["beta"]),
                           float(config["weight_limit"]), inputSize, outputSize * inputSize);
        sync("g_Spiking_gradAdd");
    }

    // Spiking::updateWeight (OPTIMIZER = adam)
    void updateWeight() {
        int len = outputSize * inputSize;
        hipLaunchKernelGGL(g_adam_vecAdd, dim3(min((len + 255) / 256, 5120)), dim3(256), 0, 0, g1_w, g2_w, b1_t, b2_t,
                           wgrad, w, len, float(config["lr"]));
        sync("g_adam_vecAdd");
        b1_t *= 0.9f;
        b2_t *= 0.999f;
    }

    std::size_t size() const { return std::size_t(outputSize) * inputSize; }
};

}  // namespace

int main(int argc, char** argv) {
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string key = argv[i];
        if (key.rfind("--", 0) != 0 || !config.count(key.substr(2))) {
            std::fprintf(stderr, "unknown option %s\n", argv[i]);
            return 1;
        }
        config[key.substr(2)] = std::atof(argv[i + 1]);
    }
    if (config["ftz"] != 0) {
        // set before HIP-CPU starts its threads: POSIX threads inherit the creating thread's FP environment
        _mm_setcsr(_mm_getcsr() | 0x8040);
    }
    const int nin = int(config["input"]), nh = int(config["hidden"]), nout = int(config["output"]);
    const int T = int(config["end_time"]);
    // DataLayerSpiking's buffers
    bool* speech = device<bool>(std::size_t(T) * nin);  // batchSpeeches[myId][0]
    bool** speeches = device<bool*>(1);
    check(cudaMemcpy(speeches, &speech, sizeof(bool*), cudaMemcpyHostToDevice), "speeches");
    bool* data_outputs = device<bool>(std::size_t(T) * nin);
    int* data_time = device<int>(std::size_t(T) * nin);
    int* data_count = device<int>(nin);
    Layer hidden("hidden_0", nin, nh, T, float(config["vth_hidden"]), false, data_outputs, data_time, data_count,
                 nullptr);
    Layer output("output", nh, nout, T, float(config["vth_output"]), true, hidden.outputs, hidden.outputs_time,
                 hidden.fireCount, hidden.curDelta);
    int* label = device<int>(1);
    float* sample_weight = device<float>(1);
    int* vote = device<int>(nout);
    Layer* layers[2] = {&hidden, &output};

    std::string line;
    while (std::getline(std::cin, line)) {
        std::istringstream in(line);
        std::string command;
        in >> command;
        try {
            if (command == "quit") {
                if (std::getenv("AUTHORS_TIMING") != nullptr)
                    for (const auto& [name, seconds] : timing) std::fprintf(stderr, "%-36s %8.3f s\n", name.c_str(), seconds);
                break;
            }
            if (command == "load" || command == "save") {
                std::string dir;
                in >> dir;
                std::vector<float> adam(4);
                if (command == "load") {
                    std::ifstream f(dir + "/adam_t.f32", std::ios::binary);
                    if (!f.read(reinterpret_cast<char*>(adam.data()), 4 * sizeof(float)))
                        throw std::runtime_error("cannot read " + dir + "/adam_t.f32");
                }
                for (int k = 0; k < 2; ++k) {
                    Layer& l = *layers[k];
                    std::string suffix = k == 0 ? "_hidden.f32" : "_output.f32";
                    if (command == "load") {
                        read_file(dir + "/w" + suffix, l.w, l.size());
                        read_file(dir + "/g1" + suffix, l.g1_w, l.size());
                        read_file(dir + "/g2" + suffix, l.g2_w, l.size());
                        l.b1_t = adam[2 * k];
                        l.b2_t = adam[2 * k + 1];
                    } else {
                        write_file(dir + "/w" + suffix, l.w, l.size());
                        write_file(dir + "/g1" + suffix, l.g1_w, l.size());
                        write_file(dir + "/g2" + suffix, l.g2_w, l.size());
                        adam[2 * k] = l.b1_t;
                        adam[2 * k + 1] = l.b2_t;
                    }
                }
                if (command == "save") {
                    std::ofstream f(dir + "/adam_t.f32", std::ios::binary);
                    f.write(reinterpret_cast<const char*>(adam.data()), 4 * sizeof(float));
                }
                std::cout << "ok" << std::endl;
            } else if (command == "step") {
                std::string raster, out;
                int y;
                float weight;
                in >> raster >> y >> weight >> out;
                if (!in) throw std::runtime_error("step RASTER LABEL WEIGHT OUT");
                read_file(raster, speech, std::size_t(T) * nin);
                check(cudaMemcpy(label, &y, sizeof(int), cudaMemcpyHostToDevice), "label");
                check(cudaMemcpy(sample_weight, &weight, sizeof(float), cudaMemcpyHostToDevice), "weight");
                check(cudaMemset(vote, 0, nout * sizeof(int)), "vote");
                // DataLayerSpiking::feedforward
                hipLaunchKernelGGL(g_DataLayerSpiking_feedforward, dim3(1, 1), dim3(min(nin * T, 1024)), 0, 0,
                                   speeches, data_outputs, T * nin, T * nin);
                sync("g_DataLayerSpiking_feedforward");
                hipLaunchKernelGGL(g_DataLayerSpiking_get_fireCount, dim3(1, 1), dim3(min(nin, 1024)), 0, 0,
                                   data_outputs, data_count, nin, T);
                sync("g_DataLayerSpiking_get_fireCount");
                hipLaunchKernelGGL(g_response_2_spiketime, dim3(1, 1), dim3(min(nin, 1024)), 0, 0, data_outputs,
                                   data_time, T * nin, nin, T);
                sync("g_response_2_spiketime");
                hidden.feedforward();
                output.feedforward();
                write_file(out + "/fire_hidden.i32", hidden.fireCount, nh);
                write_file(out + "/fire_output.i32", output.fireCount, nout);
                // outputPredict
                hipLaunchKernelGGL(g_getPredict, dim3(1), dim3(1), 0, 0, output.fireCount, nout, 0, vote);
                sync("g_getPredict");
                // backpropagation, top-down: output, then hidden
                for (int k = 1; k >= 0; --k) {
                    layers[k]->backpropagation(label, sample_weight);
                    layers[k]->getGrad();
                    layers[k]->updateWeight();
                }
                write_file(out + "/fire_output_mod.i32", output.fireCount, nout);
                write_file(out + "/delta_output.f32", output.curDelta, nout);
                write_file(out + "/delta_hidden.f32", hidden.curDelta, nh);
                write_file(out + "/lateral.f32", output.lateralFactor, nout);
                write_file(out + "/cost.f32", output.cost, 1);
                for (int k = 0; k < 2; ++k) {
                    std::string suffix = k == 0 ? "_hidden.f32" : "_output.f32";
                    write_file(out + "/w" + suffix, layers[k]->w, layers[k]->size());
                    write_file(out + "/wgrad" + suffix, layers[k]->wgrad, layers[k]->size());
                }
                std::vector<int> votes(nout);
                check(cudaMemcpy(votes.data(), vote, nout * sizeof(int), cudaMemcpyDeviceToHost), "vote");
                int predicted = int(std::max_element(votes.begin(), votes.end()) - votes.begin());
                std::cout << "ok " << predicted << std::endl;
            } else {
                throw std::runtime_error("unknown command " + command);
            }
        } catch (const std::exception& error) {
            std::cout << "error " << error.what() << std::endl;
        }
    }
    return 0;
}
