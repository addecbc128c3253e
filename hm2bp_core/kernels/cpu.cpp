// Fused CPU loop of the discrete LIF neuron of the authors' code (spec 1.2); one pass over time,
// samples in parallel. Same arithmetic, in the same order, as hm2bp_core.neuron._lif_loop, so the
// two give bit-identical rasters (a test checks it).
//
// state (v, x, r: B x N each) is read and updated in place, so a long run can be fed in chunks of
// time steps; prev_spikes (B x N) are the spikes of the step before the chunk (for lateral input).
#include <torch/extension.h>
#include <vector>

torch::Tensor lif_chunk(torch::Tensor currents, torch::Tensor prev_currents, torch::Tensor prev_spikes,
                        torch::Tensor v_state, torch::Tensor x_state, torch::Tensor r_state,
                        double nu, double tau_m, double tau_s, int64_t refractory, double lateral, int64_t t0) {
  TORCH_CHECK(currents.device().is_cpu(), "lif_chunk runs on the CPU");
  auto I = currents.contiguous();
  auto I_prev = prev_currents.contiguous();
  const int64_t T = I.size(0), B = I.size(1), N = I.size(2);
  auto spikes = torch::zeros_like(I);
  auto S_prev = prev_spikes.contiguous();
  AT_DISPATCH_FLOATING_TYPES(I.scalar_type(), "lif_chunk", [&] {
    const scalar_t* in = I.data_ptr<scalar_t>();
    const scalar_t* in_prev = I_prev.data_ptr<scalar_t>();
    const scalar_t* s_prev = S_prev.data_ptr<scalar_t>();
    scalar_t* out = spikes.data_ptr<scalar_t>();
    scalar_t* v = v_state.data_ptr<scalar_t>();
    scalar_t* x = x_state.data_ptr<scalar_t>();
    int64_t* r = r_state.data_ptr<int64_t>();
    const scalar_t tm = tau_m, ts = tau_s, th = nu, lat = lateral;
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        scalar_t* vb = v + b * N;
        scalar_t* xb = x + b * N;
        int64_t* rb = r + b * N;
        for (int64_t k = 0; k < T; ++k) {
          const int64_t t = t0 + k;
          if (t == 0) continue;  // no spike is possible at t = 0 (the zero state only decays)
          // input of step t is I[t-1] and the spikes of t-1 (one-step delay)
          const scalar_t* cur = k == 0 ? in_prev + b * N : in + ((k - 1) * B + b) * N;
          const scalar_t* prev = k == 0 ? s_prev + b * N : out + ((k - 1) * B + b) * N;
          scalar_t* now = out + (k * B + b) * N;
          scalar_t total = 0;
          if (lat != 0) for (int64_t n = 0; n < N; ++n) total += prev[n];
          for (int64_t n = 0; n < N; ++n) {
            scalar_t vv = vb[n] - vb[n] / tm;
            scalar_t xx = xb[n] - xb[n] / ts;
            xx = xx + cur[n];
            if (lat != 0) xx = xx - lat * (total - prev[n]);
            vv = vv + xx / ts;
            if (rb[n] > 0) { vv = 0; rb[n] -= 1; }
            if (vv > th) { now[n] = 1; vv = 0; rb[n] = refractory; }
            vb[n] = vv;
            xb[n] = xx;
          }
        }
      }
    });
  });
  return spikes;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.def("lif_chunk", &lif_chunk, "LIF simulation over a chunk of steps"); }
