// CPU kernels of the HM2-BP core, one pass over time per sample, samples in parallel.
//
//   lif_chunk       the discrete LIF loop of the authors' code (algorithm section 2.2) on precomputed currents;
//                   same arithmetic in the same order as hm2bp_core.neuron._lif_loop (bit-identical).
//   dense_lif       the same loop for a dense layer fed by a boolean input raster: the input current
//                   of each step is summed from the weight rows of the inputs that fired (event
//                   driven: ~2-5 % of the lines fire per step), so no T x B x N current tensor exists.
//   spike_weights   Q of hm2bp_core.spsp (what one pre spike at step t adds to e_{i|j}), computed per
//                   post neuron from its spike times: coefficients on the traces M and S, then one
//                   backward sweep of the two exponential filters (in double precision).
//   dense_backward  the HM2-BP rules of hm2bp_core.layers for a dense layer, per sample:
//                   Q, then E^T = S_in^T Q^T accumulated over the input spikes only (E_ij is the
//                   S-PSP e_{i|j}), then side effect, weight gradient and error sent down from E.
//                   Per thread (kept between calls): Q (T x N), E^T and a gradient sum (N_in x N);
//                   nothing grows with B.
//
// State tensors (v, x, r, last currents, last spikes: B x N each) are read and updated in place so
// a run can be fed in chunks of steps.
#include <torch/extension.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <mutex>
#include <vector>

// One step t > 0 of the authors' LIF loop (algorithm section 2.2) for N neurons of one sample, v, x, r updated
// in place: cur = I[t-1], prev = the layer's spikes at t-1 (lateral input), now[n] = 1 where a
// neuron fires (now must be zeroed). Same arithmetic, in the same order, as neuron._lif_loop.
template <typename scalar_t>
inline void lif_step(scalar_t* v, scalar_t* x, int64_t* r, const scalar_t* cur, const scalar_t* prev, scalar_t* now,
                     int64_t N, scalar_t tm, scalar_t ts, scalar_t th, int64_t refractory, scalar_t lat) {
  scalar_t total = 0;
  if (lat != 0) for (int64_t n = 0; n < N; ++n) total += prev[n];
  for (int64_t n = 0; n < N; ++n) {
    scalar_t vv = v[n] - v[n] / tm;
    scalar_t xx = x[n] - x[n] / ts;
    xx = xx + cur[n];
    if (lat != 0) xx = xx - lat * (total - prev[n]);
    vv = vv + xx / ts;
    if (r[n] > 0) { vv = 0; r[n] -= 1; }
    if (vv > th) { now[n] = 1; vv = 0; r[n] = refractory; }
    v[n] = vv;
    x[n] = xx;
  }
}

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
          lif_step(vb, xb, rb, cur, prev, out + (k * B + b) * N, N, tm, ts, th, refractory, lat);
        }
      }
    });
  });
  return spikes;
}

namespace {

// Indices of the set bytes of a boolean row (most rows are > 95 % zeros: skip 8 bytes at a time).
void active_indices(const bool* row, int64_t n, std::vector<int64_t>& out) {
  out.clear();
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) {
    uint64_t word;
    std::memcpy(&word, row + j, 8);
    if (word == 0) continue;
    for (int64_t q = j; q < j + 8; ++q)
      if (row[q]) out.push_back(q);
  }
  for (; j < n; ++j)
    if (row[j]) out.push_back(j);
}

struct PspParams {
  double tau_m, tau_s, scale;  // scale = c = 1 / (1 - tau_s / tau_m)
  int64_t refractory, shift, window;  // shift = T_ref or 0; window = 4 tau_m or -1 (none)
  std::vector<double> decay_m, decay_s;  // decay_m[k + 1] = exp(-k / tau_m) for k = -1 .. T

  double m(int64_t k) const { return decay_m[k + 1]; }
  double s(int64_t k) const { return decay_s[k + 1]; }
};

// One post neuron's spike weights (spsp.spike_weights): out[t * stride] for t in [0, T), which the
// caller has zeroed (t = 0, t >= T - shift and steps after the last spike stay 0).
// times: its K >= 1 spike steps, ascending. cm, cs: scratch of length T.
template <typename out_t>
void neuron_spike_weights(const int64_t* times, int64_t K, int64_t T, const PspParams& p, double* cm, double* cs,
                          out_t* out, int64_t stride) {
  const int64_t last = times[K - 1];  // no coefficient lies after the last spike: Q is 0 there
  std::fill(cm, cm + last + 1, 0.0);
  std::fill(cs, cs + last + 1, 0.0);
  for (int64_t k = 0; k < K; ++k) {
    const int64_t t = times[k];
    const int64_t r = k ? times[k - 1] + p.refractory : 1;  // restart of integration before t_k (r <= t + 1)
    const double decay = p.m(t - r);
    cm[t] += 1.0;  // every pre spike up to t_k, as if none arrived before the restart
    cs[t] -= 1.0;
    cm[r - 1] -= decay * p.m(1);  // spikes before the restart re-integrate from u = 0 at r_k
    cs[r - 1] += decay * p.s(1);
    if (p.window >= 0) {
      const int64_t old = t - p.window - 1 + p.shift;  // spikes at or before `old` are outside the window
      if (old >= 0) {
        cm[old] -= p.m(t - old);
        cs[old] += p.s(t - old);
        const int64_t q = std::max<int64_t>(std::min(old, r - 1), 0);
        cm[q] += decay * p.m(r - q);
        cs[q] -= decay * p.s(r - q);
      }
    }
  }
  // anti-causal filters y[u] = sum_{t >= u} c[t] decay^(t - u); a pre spike at t counts at u = t + shift
  const double em = p.m(1), es = p.s(1);
  double ym = 0, ys = 0;
  for (int64_t u = last; u >= 0; --u) {
    ym = cm[u] + em * ym;
    ys = cs[u] + es * ys;
    const int64_t t = u - p.shift;
    if (t >= 1) out[t * stride] = out_t(p.scale * (ym + ys));
  }
}

PspParams psp_params(double tau_m, double tau_s, int64_t refractory, bool shift, bool window, int64_t T) {
  PspParams p{tau_m, tau_s, 1.0 / (1.0 - tau_s / tau_m), refractory, shift ? refractory : 0,
              window ? int64_t(4 * tau_m) : -1, std::vector<double>(T + 2), std::vector<double>(T + 2)};
  for (int64_t k = -1; k <= T; ++k) {
    p.decay_m[k + 1] = std::exp(-double(k) / tau_m);
    p.decay_s[k + 1] = std::exp(-double(k) / tau_s);
  }
  return p;
}

// Spike times of every neuron of one sample of a T x B x N boolean raster, as lists.
void spike_times(const bool* raster, int64_t T, int64_t B, int64_t N, int64_t b,
                 std::vector<std::vector<int64_t>>& times) {
  for (auto& list : times) list.clear();
  std::vector<int64_t> active;
  for (int64_t t = 0; t < T; ++t) {
    active_indices(raster + (t * B + b) * N, N, active);
    for (int64_t i : active) times[i].push_back(t);
  }
}

}  // namespace

torch::Tensor spike_weights(torch::Tensor post, bool as_double, double tau_m, double tau_s, int64_t refractory,
                            bool shift, bool window) {
  TORCH_CHECK(post.device().is_cpu() && post.scalar_type() == torch::kBool, "spike_weights: a boolean CPU raster");
  auto rows = post.permute({1, 2, 0}).contiguous();  // B x N x T
  const int64_t B = rows.size(0), N = rows.size(1), T = rows.size(2);
  auto q = torch::zeros({B, N, T}, torch::TensorOptions().dtype(as_double ? torch::kFloat64 : torch::kFloat32));
  const PspParams p = psp_params(tau_m, tau_s, refractory, shift, window, T);
  const bool* spikes = rows.data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "spike_weights", [&] {
    scalar_t* out = q.data_ptr<scalar_t>();
    at::parallel_for(0, B * N, 16, [&](int64_t a, int64_t z) {
      std::vector<double> cm(T), cs(T);
      std::vector<int64_t> times;
      for (int64_t row = a; row < z; ++row) {
        active_indices(spikes + row * T, T, times);
        if (!times.empty())
          neuron_spike_weights(times.data(), int64_t(times.size()), T, p, cm.data(), cs.data(), out + row * T, 1);
      }
    });
  });
  return q;
}

torch::Tensor dense_lif(torch::Tensor inputs, torch::Tensor weight_t, torch::Tensor prev_currents,
                        torch::Tensor prev_spikes, torch::Tensor v_state, torch::Tensor x_state, torch::Tensor r_state,
                        double nu, double tau_m, double tau_s, int64_t refractory, double lateral, int64_t t0) {
  TORCH_CHECK(inputs.device().is_cpu() && inputs.scalar_type() == torch::kBool, "dense_lif: a boolean CPU raster");
  auto S = inputs.contiguous();
  auto WT = weight_t.contiguous();  // N_in x N
  const int64_t T = S.size(0), B = S.size(1), Nin = S.size(2), N = WT.size(1);
  TORCH_CHECK(WT.size(0) == Nin, "dense_lif: weight_t must be N_in x N");
  auto spikes = torch::zeros({T, B, N}, torch::TensorOptions().dtype(torch::kBool));
  const bool* in = S.data_ptr<bool>();
  bool* out = spikes.data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES(WT.scalar_type(), "dense_lif", [&] {
    const scalar_t* w = WT.data_ptr<scalar_t>();
    scalar_t* v = v_state.data_ptr<scalar_t>();
    scalar_t* x = x_state.data_ptr<scalar_t>();
    int64_t* r = r_state.data_ptr<int64_t>();
    scalar_t* last_cur = prev_currents.data_ptr<scalar_t>();
    scalar_t* last_spk = prev_spikes.data_ptr<scalar_t>();
    const scalar_t tm = tau_m, ts = tau_s, th = nu, lat = lateral;
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<scalar_t> cur(N), next(N), prev(N), now(N);
      std::vector<int64_t> active;
      for (int64_t b = b0; b < b1; ++b) {
        scalar_t* vb = v + b * N;
        scalar_t* xb = x + b * N;
        int64_t* rb = r + b * N;
        std::copy(last_cur + b * N, last_cur + (b + 1) * N, cur.begin());  // I[t0 - 1]
        std::copy(last_spk + b * N, last_spk + (b + 1) * N, prev.begin());
        for (int64_t k = 0; k < T; ++k) {
          const int64_t t = t0 + k;
          // I[t] = sum of the weight rows of the inputs firing at t; it reaches the neuron at t + 1
          std::fill(next.begin(), next.end(), scalar_t(0));
          active_indices(in + (k * B + b) * Nin, Nin, active);
          for (int64_t j : active) {
            const scalar_t* row = w + j * N;
            for (int64_t n = 0; n < N; ++n) next[n] += row[n];
          }
          std::fill(now.begin(), now.end(), scalar_t(0));
          if (t != 0) {  // no spike is possible at t = 0 (the zero state only decays)
            lif_step(vb, xb, rb, cur.data(), prev.data(), now.data(), N, tm, ts, th, refractory, lat);
            bool* spk = out + (k * B + b) * N;
            for (int64_t n = 0; n < N; ++n) spk[n] = now[n] != 0;
          }
          std::swap(cur, next);
          std::swap(prev, now);
        }
        std::copy(cur.begin(), cur.end(), last_cur + b * N);
        std::copy(prev.begin(), prev.end(), last_spk + b * N);
      }
    });
  });
  return spikes;
}

std::vector<torch::Tensor> dense_backward(torch::Tensor inputs, torch::Tensor post, torch::Tensor weight_t,
                                          torch::Tensor delta, torch::Tensor lateral_factor, double nu, double tau_m,
                                          double tau_s, int64_t refractory, bool shift, bool window, bool side_effect,
                                          bool fallbacks, double silent_value, bool need_below, bool per_sample) {
  TORCH_CHECK(inputs.scalar_type() == torch::kBool && post.scalar_type() == torch::kBool,
              "dense_backward: boolean rasters");
  auto S = inputs.contiguous();  // T x B x N_in
  auto P = post.contiguous();    // T x B x N
  auto WT = weight_t.contiguous();  // N_in x N
  auto D = delta.contiguous();   // B x N
  const bool has_lateral = lateral_factor.numel() > 0;
  auto L = has_lateral ? lateral_factor.contiguous() : lateral_factor;
  const int64_t T = S.size(0), B = S.size(1), Nin = S.size(2), N = WT.size(1);
  TORCH_CHECK(WT.size(0) == Nin, "dense_backward: weight_t must be N_in x N");
  auto opts = WT.options();
  auto grad = per_sample ? torch::zeros({B, N, Nin}, opts) : torch::zeros({N, Nin}, opts);
  auto below = need_below ? torch::zeros({B, Nin}, opts) : torch::empty({0}, opts);
  auto row_sum = side_effect && fallbacks ? WT.sum(0).contiguous() : torch::zeros({N}, opts);  // sum_j w_ij
  const PspParams p = psp_params(tau_m, tau_s, refractory, shift, window, T);
  const bool* in = S.data_ptr<bool>();
  const bool* po = P.data_ptr<bool>();
  std::mutex merge;
  AT_DISPATCH_FLOATING_TYPES(WT.scalar_type(), "dense_backward", [&] {
    const scalar_t* wt = WT.data_ptr<scalar_t>();
    const scalar_t* dl = D.data_ptr<scalar_t>();
    const scalar_t* lf = has_lateral ? L.data_ptr<scalar_t>() : nullptr;
    const scalar_t* rs = row_sum.data_ptr<scalar_t>();
    scalar_t* g = grad.data_ptr<scalar_t>();
    scalar_t* bl = need_below ? below.data_ptr<scalar_t>() : nullptr;
    const scalar_t th = nu, e_silent = silent_value;
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      // the big buffers live as long as the thread: fresh multi-MB allocations cost a page fault per 4 KiB
      thread_local std::vector<scalar_t> q, et, gt;
      q.resize(T * N);
      et.resize(Nin * N);
      if (!per_sample) gt.assign(Nin * N, scalar_t(0));
      std::vector<scalar_t> v(N), d_fire(N), d_silent(N), weighted(N), silent_row(N);
      std::vector<double> cm(T), cs(T);
      std::vector<std::vector<int64_t>> times(N);
      std::vector<int64_t> a_in(Nin), active;
      for (int64_t b = b0; b < b1; ++b) {
        // Q^T (T x N): spike weights of every firing post neuron
        spike_times(po, T, B, N, b, times);
        std::fill(q.begin(), q.end(), scalar_t(0));
        for (int64_t i = 0; i < N; ++i)
          if (!times[i].empty())
            neuron_spike_weights(times[i].data(), int64_t(times[i].size()), T, p, cm.data(), cs.data(), q.data() + i, N);
        // E^T (N_in x N): E_ij = sum over the spikes of input j of Q[i, t]
        std::fill(et.begin(), et.end(), scalar_t(0));
        std::fill(a_in.begin(), a_in.end(), 0);
        for (int64_t t = 0; t < T; ++t) {
          active_indices(in + (t * B + b) * Nin, Nin, active);
          const scalar_t* qt = q.data() + t * N;
          for (int64_t j : active) {
            a_in[j] += 1;
            scalar_t* e = et.data() + j * N;
            for (int64_t i = 0; i < N; ++i) e[i] += qt[i];
          }
        }
        // silent post neurons (their Q and E rows are 0) count e = silent_value for every active input:
        // added below as silent[i] * e_silent * [a_j > 0], so E^T is never written column by column
        for (int64_t i = 0; i < N; ++i) silent_row[i] = times[i].empty() ? scalar_t(1) : scalar_t(0);
        // side effect s_i = (1/nu) sum_j w_ij rho_ij, rho = e/a_i (firing) or 0.5 (silent, fallbacks)
        std::fill(weighted.begin(), weighted.end(), scalar_t(0));
        if (side_effect)
          for (int64_t j = 0; j < Nin; ++j) {
            const scalar_t* e = et.data() + j * N;
            const scalar_t* w = wt + j * N;
            for (int64_t i = 0; i < N; ++i) weighted[i] += w[i] * e[i];
          }
        for (int64_t i = 0; i < N; ++i) {
          const scalar_t a_out = scalar_t(times[i].size());
          scalar_t side = 0;
          if (side_effect) {
            if (a_out > 0) side = weighted[i] / (th * a_out);
            else if (fallbacks) side = scalar_t(0.5) * rs[i] / th;
          }
          const scalar_t d = dl[b * N + i] / th;
          v[i] = d * (scalar_t(1) + side) * (has_lateral ? lf[b * N + i] : scalar_t(1));
          d_fire[i] = a_out > 0 ? d : scalar_t(0);
          d_silent[i] = a_out > 0 ? scalar_t(0) : d;
        }
        // g_ij = v_i e_ij
        if (per_sample) {
          scalar_t* gb = g + b * N * Nin;
          for (int64_t j = 0; j < Nin; ++j) {
            const scalar_t sj = a_in[j] > 0 ? e_silent : scalar_t(0);
            for (int64_t i = 0; i < N; ++i) gb[i * Nin + j] = v[i] * (et[j * N + i] + silent_row[i] * sj);
          }
        } else {
          for (int64_t j = 0; j < Nin; ++j) {
            const scalar_t* e = et.data() + j * N;
            const scalar_t sj = a_in[j] > 0 ? e_silent : scalar_t(0);
            scalar_t* acc = gt.data() + j * N;
            for (int64_t i = 0; i < N; ++i) acc[i] += v[i] * (e[i] + silent_row[i] * sj);
          }
        }
        // delta_j = sum_i d_i w_ij R_ij, R = e_ij / a_j where both fire; fallbacks: R = 1 elsewhere
        if (need_below)
          for (int64_t j = 0; j < Nin; ++j) {
            const scalar_t* e = et.data() + j * N;
            const scalar_t* w = wt + j * N;
            scalar_t fire_e = 0, fire = 0, silent = 0;
            for (int64_t i = 0; i < N; ++i) {
              fire_e += d_fire[i] * w[i] * e[i];
              fire += d_fire[i] * w[i];
              silent += d_silent[i] * w[i];
            }
            const scalar_t a = scalar_t(a_in[j]);
            if (a > 0) bl[b * Nin + j] = fire_e / a + (fallbacks ? silent : e_silent * silent / a);
            else bl[b * Nin + j] = fallbacks ? silent + fire : scalar_t(0);
          }
      }
      if (!per_sample) {  // g (N x N_in) += this thread's G^T, transposed in tiles
        std::lock_guard<std::mutex> lock(merge);
        constexpr int64_t tile = 32;
        for (int64_t j0 = 0; j0 < Nin; j0 += tile)
          for (int64_t i0 = 0; i0 < N; i0 += tile)
            for (int64_t i = i0; i < std::min(i0 + tile, N); ++i)
              for (int64_t j = j0; j < std::min(j0 + tile, Nin); ++j) g[i * Nin + j] += gt[j * N + i];
      }
    });
  });
  return {grad, below};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("lif_chunk", &lif_chunk, "LIF simulation over a chunk of steps, currents given");
  m.def("dense_lif", &dense_lif, "dense layer: event-driven input currents and LIF over a chunk of steps");
  m.def("spike_weights", &spike_weights, "S-PSP spike weights Q (B x N x T) of a post raster");
  m.def("dense_backward", &dense_backward, "HM2-BP gradient and error sent down of a dense layer");
}
