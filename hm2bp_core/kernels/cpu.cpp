// CPU kernels of the HM2-BP core, one pass over time per sample, samples (at batch sizes below the thread
// count also the neurons of a sample: neuron_chunks) in parallel.
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
//   conv_lif        a conv layer (shared kernel K: C_out x C_in x k x k, stride, zero padding) fed by a
//                   boolean raster: each step's input current is the kernel footprint of every input
//                   that fired, added into the output maps, then the LIF step (as dense_lif, in SIMD
//                   lanes); returns the raster and the spike counts (B x N). Output channels go in
//                   blocks of BLOCK = 8, position-major (the 8 channels of a position side by side):
//                   an input spike adds one vector of kernel entries per position it reaches.
//   pool_lif        the same for a pool layer (unit weights over size x size windows, stride = size).
//   conv_backward   the HM2-BP rules of hm2bp_core.layers for a conv layer, per output position: Q of
//                   the post neuron, e_{o|q} = sum over the spikes of each input q of its receptive field
//                   of Q[o, t], then side effect, the shared kernel's gradient (summed over positions)
//                   and the error sent down through the adjoint scatter; by blocks of 8 channels as
//                   conv_lif, which share a position's receptive field (its spikes are read once).
//   pool_backward   the pool layer's error sent down (layers.PoolLayer.backward) from the same e_{o|q}.
//                   conv and pool work on (sample, output channel) pairs, so one sample still uses
//                   every thread; nothing of size T x N_out exists besides the boolean rasters.
//
// Event lists: conv_lif and pool_lif also return their raster's spikes as step-major lists (off, idx: see
// GivenEvents), and conv_lif, pool_lif, conv_backward and pool_backward take such lists of their input
// (and post) rasters, so that each raster is scanned once, by the kernel that wrote it, not by each
// kernel that reads it (empty tensors: the kernel scans the raster itself).
//
// State tensors (v, x, r, last currents, last spikes: B x N each) are read and updated in place so
// a run can be fed in chunks of steps.
#include <torch/extension.h>

#include <algorithm>
#ifdef __AVX2__
#include <immintrin.h>
#endif
#include <cmath>
#include <cstring>
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

// Indices of the set bytes of a boolean row (most rows are > 95 % zeros: 32 bytes at a time with AVX2, else 8).
// A set byte of a word is a set bit at 8 * (its offset): count trailing zeros to find each one.
void active_indices(const bool* row, int64_t n, std::vector<int64_t>& out) {
  out.clear();
  int64_t j = 0;
#ifdef __AVX2__
  for (; j + 32 <= n; j += 32) {  // bit i of the mask: byte j + i is set
    const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + j));
    for (uint32_t mask = uint32_t(_mm256_movemask_epi8(_mm256_slli_epi16(bytes, 7))); mask != 0; mask &= mask - 1)
      out.push_back(j + __builtin_ctz(mask));
  }
#endif
  for (; j + 8 <= n; j += 8) {
    uint64_t word;
    std::memcpy(&word, row + j, 8);
    word &= 0x0101010101010101ULL;  // bools are 0 or 1; keep the low bit of each byte
    for (; word != 0; word &= word - 1) out.push_back(j + __builtin_ctzll(word) / 8);
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
  // anti-causal filters y[u] = c[u] + decay y[u + 1] = sum_{t >= u} c[t] decay^(t - u); a pre spike at t counts
  // at u = t + shift, so only u >= shift + 1 is written. Two steps at a time: y[u] = c[u] + decay Y and
  // y[u - 1] = (c[u - 1] + decay c[u]) + decay^2 Y from Y = y[u + 1], so each filter waits on one multiply-add
  // per two steps instead of per step (the sums may round differently in the last bit of a double).
  const double em = p.m(1), es = p.s(1), em2 = em * em, es2 = es * es;
  const int64_t first = p.shift + 1;
  double ym = 0, ys = 0;
  int64_t u = last;
  for (; u - 1 >= first; u -= 2) {
    const double pm = cm[u - 1] + em * cm[u], ps = cs[u - 1] + es * cs[u];
    const double um = cm[u] + em * ym, us = cs[u] + es * ys;
    ym = pm + em2 * ym;
    ys = ps + es2 * ys;
    out[(u - p.shift) * stride] = out_t(p.scale * (um + us));
    out[(u - 1 - p.shift) * stride] = out_t(p.scale * (ym + ys));
  }
  if (u == first) {
    ym = cm[u] + em * ym;
    ys = cs[u] + es * ys;
    out[(u - p.shift) * stride] = out_t(p.scale * (ym + ys));
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

// Work items of the dense kernels: (sample b, neuron chunk c). With fewer samples than threads (batch 1, the
// authors' setting) a sample's neurons are split into chunks so that every thread has work; a layer whose neurons
// are coupled within a step (lateral inhibition) is never split. One chunk per sample otherwise, so a run with at
// least as many samples per batch as threads computes exactly what it did before chunks existed.
static int64_t neuron_chunks(int64_t B, int64_t N, bool coupled) {
  const int64_t threads = at::get_num_threads();
  if (coupled || B >= threads) return 1;
  return std::max<int64_t>(1, std::min<int64_t>((threads + B - 1) / B, N / 64));
}

// First neuron of chunk c of C (multiples of 16, so chunks share no cache line of a float row).
static int64_t chunk_start(int64_t c, int64_t C, int64_t N) {
  if (c >= C) return N;
  return c == 0 ? 0 : (c * N / C) & ~int64_t(15);
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
  const int64_t C = neuron_chunks(B, N, lateral != 0);
  AT_DISPATCH_FLOATING_TYPES(WT.scalar_type(), "dense_lif", [&] {
    const scalar_t* w = WT.data_ptr<scalar_t>();
    scalar_t* v = v_state.data_ptr<scalar_t>();
    scalar_t* x = x_state.data_ptr<scalar_t>();
    int64_t* r = r_state.data_ptr<int64_t>();
    scalar_t* last_cur = prev_currents.data_ptr<scalar_t>();
    scalar_t* last_spk = prev_spikes.data_ptr<scalar_t>();
    const scalar_t tm = tau_m, ts = tau_s, th = nu, lat = lateral;
    at::parallel_for(0, B * C, 1, [&](int64_t item0, int64_t item1) {
      std::vector<scalar_t> cur(N), next(N), prev(N), now(N);
      std::vector<int64_t> active;
      for (int64_t item = item0; item < item1; ++item) {
        const int64_t b = item / C, n0 = chunk_start(item % C, C, N), M = chunk_start(item % C + 1, C, N) - n0;
        const int64_t off = b * N + n0;  // this item's neurons in the B x N state
        scalar_t* vb = v + off;
        scalar_t* xb = x + off;
        int64_t* rb = r + off;
        std::copy(last_cur + off, last_cur + off + M, cur.begin());  // I[t0 - 1]
        std::copy(last_spk + off, last_spk + off + M, prev.begin());
        for (int64_t k = 0; k < T; ++k) {
          const int64_t t = t0 + k;
          // I[t] = sum of the weight rows of the inputs firing at t; it reaches the neuron at t + 1
          std::fill(next.begin(), next.begin() + M, scalar_t(0));
          active_indices(in + (k * B + b) * Nin, Nin, active);
          for (int64_t j : active) {
            const scalar_t* row = w + j * N + n0;
            for (int64_t n = 0; n < M; ++n) next[n] += row[n];
          }
          std::fill(now.begin(), now.begin() + M, scalar_t(0));
          if (t != 0) {  // no spike is possible at t = 0 (the zero state only decays)
            lif_step(vb, xb, rb, cur.data(), prev.data(), now.data(), M, tm, ts, th, refractory, lat);
            bool* spk = out + (k * B + b) * N + n0;
            for (int64_t n = 0; n < M; ++n) spk[n] = now[n] != 0;
          }
          std::swap(cur, next);
          std::swap(prev, now);
        }
        std::copy(cur.begin(), cur.begin() + M, last_cur + off);
        std::copy(prev.begin(), prev.begin() + M, last_spk + off);
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
  // the backward pass of a post neuron needs no other post neuron of its sample: chunks whatever the coupling;
  // the error sent down sums over the post neurons, so each chunk writes its part and the parts are added after
  const int64_t C = neuron_chunks(B, N, false);
  auto opts = WT.options();
  auto grad = per_sample ? torch::zeros({B, N, Nin}, opts) : torch::zeros({N, Nin}, opts);
  auto below_parts = need_below ? torch::zeros({C, B, Nin}, opts) : torch::empty({0}, opts);
  auto row_sum = side_effect && fallbacks ? WT.sum(0).contiguous() : torch::zeros({N}, opts);  // sum_j w_ij
  const PspParams p = psp_params(tau_m, tau_s, refractory, shift, window, T);
  const bool* in = S.data_ptr<bool>();
  const bool* po = P.data_ptr<bool>();
  AT_DISPATCH_FLOATING_TYPES(WT.scalar_type(), "dense_backward", [&] {
    // each chunk's gradient sum (its thread's gt, the rows it added to, its post neurons lo .. hi), added to g in
    // chunk order after the parallel loop: the sum does not depend on which thread finished first
    struct Part {
      scalar_t* gt = nullptr;
      std::vector<int64_t> rows;
      int64_t lo = 0, hi = 0;
    };
    std::vector<Part> parts(at::get_num_threads());
    const scalar_t* wt = WT.data_ptr<scalar_t>();
    const scalar_t* dl = D.data_ptr<scalar_t>();
    const scalar_t* lf = has_lateral ? L.data_ptr<scalar_t>() : nullptr;
    const scalar_t* rs = row_sum.data_ptr<scalar_t>();
    scalar_t* g = grad.data_ptr<scalar_t>();
    scalar_t* bp = need_below ? below_parts.data_ptr<scalar_t>() : nullptr;
    const scalar_t th = nu, e_silent = silent_value;
    at::parallel_for(0, B * C, 1, [&](int64_t item0, int64_t item1) {
      // The big buffers live as long as the thread (fresh multi-MB allocations cost a page fault per 4 KiB).
      // Only the rows of inputs that fire in a sample (a_in > 0; ~1 in 5 of MNIST's pixels) are read or written:
      // E^T rows of the others are stale, not zeroed, and never read; gt is all 0 between calls (each call
      // clears the rows it added to), whatever layer shape the thread ran last.
      thread_local std::vector<scalar_t> q, et, gt;
      q.resize(T * N);
      et.resize(Nin * N);
      if (!per_sample) gt.resize(Nin * N, scalar_t(0));
      int64_t lo = N, hi = 0;  // the post neurons this thread's gradient sum holds
      std::vector<scalar_t> v(N), d_fire(N), d_silent(N), weighted(N), silent_row(N);
      std::vector<double> cm(T), cs(T);
      std::vector<std::vector<int64_t>> times(N);
      std::vector<int64_t> a_in(Nin), active, fired;
      std::vector<char> touched(per_sample ? 0 : Nin, 0);  // gt rows of this call
      for (int64_t item = item0; item < item1; ++item) {
        // this item: sample b, post neurons n0 .. n0 + M; Q^T is T x M and E^T is N_in x M (row stride M)
        const int64_t b = item / C, n0 = chunk_start(item % C, C, N), M = chunk_start(item % C + 1, C, N) - n0;
        lo = std::min(lo, n0);
        hi = std::max(hi, n0 + M);
        // Q^T (T x M): spike weights of every firing post neuron
        spike_times(po, T, B, N, b, times);
        std::fill(q.begin(), q.begin() + T * M, scalar_t(0));
        for (int64_t i = 0; i < M; ++i)
          if (!times[n0 + i].empty())
            neuron_spike_weights(times[n0 + i].data(), int64_t(times[n0 + i].size()), T, p, cm.data(), cs.data(),
                                 q.data() + i, M);
        // E^T (N_in x M): E_ij = sum over the spikes of input j of Q[i, t], in one pass over the raster that
        // also counts a_j and clears a row at its input's first spike
        std::fill(a_in.begin(), a_in.end(), 0);
        for (int64_t t = 0; t < T; ++t) {
          active_indices(in + (t * B + b) * Nin, Nin, active);
          const scalar_t* qt = q.data() + t * M;
          for (int64_t j : active) {
            scalar_t* e = et.data() + j * M;
            if (a_in[j]++ == 0) std::copy(qt, qt + M, e);
            else for (int64_t i = 0; i < M; ++i) e[i] += qt[i];
          }
        }
        fired.clear();  // the inputs that fire in this sample
        for (int64_t j = 0; j < Nin; ++j)
          if (a_in[j] > 0) fired.push_back(j);
        // silent post neurons (their Q and E rows are 0) count e = silent_value for every active input:
        // added below as silent[i] * e_silent * [a_j > 0], so E^T is never written column by column
        for (int64_t i = 0; i < M; ++i) silent_row[i] = times[n0 + i].empty() ? scalar_t(1) : scalar_t(0);
        // side effect s_i = (1/nu) sum_j w_ij rho_ij, rho = e/a_i (firing) or 0.5 (silent, fallbacks)
        std::fill(weighted.begin(), weighted.begin() + M, scalar_t(0));
        if (side_effect)
          for (int64_t j : fired) {
            const scalar_t* e = et.data() + j * M;
            const scalar_t* w = wt + j * N + n0;
            for (int64_t i = 0; i < M; ++i) weighted[i] += w[i] * e[i];
          }
        for (int64_t i = 0; i < M; ++i) {
          const int64_t n = n0 + i;
          const scalar_t a_out = scalar_t(times[n].size());
          scalar_t side = 0;
          if (side_effect) {
            if (a_out > 0) side = weighted[i] / (th * a_out);
            else if (fallbacks) side = scalar_t(0.5) * rs[n] / th;
          }
          const scalar_t d = dl[b * N + n] / th;
          v[i] = d * (scalar_t(1) + side) * (has_lateral ? lf[b * N + n] : scalar_t(1));
          d_fire[i] = a_out > 0 ? d : scalar_t(0);
          d_silent[i] = a_out > 0 ? scalar_t(0) : d;
        }
        // g_ij = v_i e_ij (0 where input j never fires: e_ij = 0 and no silent-post term)
        if (per_sample) {
          scalar_t* gb = g + (b * N + n0) * Nin;
          for (int64_t j : fired)
            for (int64_t i = 0; i < M; ++i) gb[i * Nin + j] = v[i] * (et[j * M + i] + silent_row[i] * e_silent);
        } else {
          for (int64_t j : fired) {
            const scalar_t* e = et.data() + j * M;
            scalar_t* acc = gt.data() + j * N + n0;
            for (int64_t i = 0; i < M; ++i) acc[i] += v[i] * (e[i] + silent_row[i] * e_silent);
            touched[j] = 1;
          }
        }
        // delta_j = sum_i d_i w_ij R_ij, R = e_ij / a_j where both fire; fallbacks: R = 1 elsewhere
        // (an input that never fires: sum_i d_i w_ij, d = d_fire + d_silent, with fallbacks, else 0)
        if (need_below) {
          scalar_t* bl = bp + ((item % C) * B + b) * Nin;
          for (int64_t j = 0; j < Nin; ++j) {
            const scalar_t* w = wt + j * N + n0;
            const scalar_t a = scalar_t(a_in[j]);
            if (a > 0) {
              const scalar_t* e = et.data() + j * M;
              scalar_t fire_e = 0, silent = 0;
              for (int64_t i = 0; i < M; ++i) {
                fire_e += d_fire[i] * w[i] * e[i];
                silent += d_silent[i] * w[i];
              }
              bl[j] = fire_e / a + (fallbacks ? silent : e_silent * silent / a);
            } else if (fallbacks) {
              scalar_t fire = 0, silent = 0;
              for (int64_t i = 0; i < M; ++i) {
                fire += d_fire[i] * w[i];
                silent += d_silent[i] * w[i];
              }
              bl[j] = silent + fire;
            }
          }
        }
      }
      if (!per_sample) {  // this chunk's G^T over its post neurons and inputs, added to g below
        Part& part = parts[at::get_thread_num()];
        part.gt = gt.data();
        part.lo = lo;
        part.hi = hi;
        for (int64_t j = 0; j < Nin; ++j)
          if (touched[j]) part.rows.push_back(j);
      }
    });
    for (Part& part : parts) {  // g (N x N_in) += each chunk's G^T, transposed in tiles; its rows cleared after
      if (part.gt == nullptr) continue;
      constexpr int64_t tile = 32;
      const int64_t R = int64_t(part.rows.size());
      for (int64_t k0 = 0; k0 < R; k0 += tile)
        for (int64_t i0 = part.lo; i0 < part.hi; i0 += tile)
          for (int64_t i = i0; i < std::min(i0 + tile, part.hi); ++i)
            for (int64_t k = k0; k < std::min(k0 + tile, R); ++k)
              g[i * Nin + part.rows[k]] += part.gt[part.rows[k] * N + i];
      for (int64_t j : part.rows) std::fill(part.gt + j * N, part.gt + (j + 1) * N, scalar_t(0));
    }
  });
  auto below = !need_below ? below_parts : C == 1 ? below_parts[0] : below_parts.sum(0);
  return {grad, below};
}

namespace {

// SIMD lanes of 64 bytes (GCC/Clang vector extensions: AVX-512, two AVX2 halves, or scalar code, as
// the machine has), with the matching integer lanes for the refractory counters and the spike bytes.
template <typename scalar_t>
struct Lanes;
template <>
struct Lanes<float> {
  typedef float vec __attribute__((vector_size(64)));
  typedef int32_t count_t;
  typedef int32_t ivec __attribute__((vector_size(64)));
  typedef int8_t bvec __attribute__((vector_size(16)));
  static constexpr int64_t n = 16;
};
template <>
struct Lanes<double> {
  typedef double vec __attribute__((vector_size(64)));
  typedef int64_t count_t;
  typedef int64_t ivec __attribute__((vector_size(64)));
  typedef int8_t bvec __attribute__((vector_size(8)));
  static constexpr int64_t n = 8;
};

// lif_step_plain's step for neurons n0 .. N - 1, one at a time (what is left after the whole vectors)
template <typename scalar_t, typename count_t>
inline void lif_step_scalar(scalar_t* v, scalar_t* x, count_t* r, const scalar_t* cur, bool* spk, count_t* count,
                            int64_t n0, int64_t N, scalar_t tm, scalar_t ts, scalar_t th, count_t refractory) {
  for (int64_t n = n0; n < N; ++n) {
    scalar_t vv = v[n] - v[n] / tm;
    scalar_t xx = x[n] - x[n] / ts;
    xx = xx + cur[n];
    vv = vv + xx / ts;
    if (r[n] > 0) { vv = 0; r[n] -= 1; }
    spk[n] = vv > th;
    if (spk[n]) { vv = 0; r[n] = refractory; count[n] += 1; }
    v[n] = vv;
    x[n] = xx;
  }
}

// One step t > 0 of the LIF loop without lateral input (conv and pool layers): lif_step's arithmetic in
// its order (IEEE operations per lane, so bit-identical), on whole vectors; spk[n] = whether n fires,
// and count[n] counts its spikes.
template <typename scalar_t>
inline void lif_step_plain(scalar_t* v, scalar_t* x, typename Lanes<scalar_t>::count_t* r, const scalar_t* cur,
                           bool* spk, typename Lanes<scalar_t>::count_t* count, int64_t N, scalar_t tm, scalar_t ts,
                           scalar_t th, typename Lanes<scalar_t>::count_t refractory) {
  using L = Lanes<scalar_t>;
  using vec = typename L::vec;
  using ivec = typename L::ivec;
  using bvec = typename L::bvec;
  int64_t n = 0;
  for (; n + L::n <= N; n += L::n) {
    vec vv, xx, c;
    ivec rr, cc;
    std::memcpy(&vv, v + n, sizeof(vec));
    std::memcpy(&xx, x + n, sizeof(vec));
    std::memcpy(&c, cur + n, sizeof(vec));
    std::memcpy(&rr, r + n, sizeof(ivec));
    std::memcpy(&cc, count + n, sizeof(ivec));
    vv = vv - vv / tm;
    xx = xx - xx / ts;
    xx = xx + c;
    vv = vv + xx / ts;
    const ivec clamped = rr > 0;  // -1 where true
    vv = clamped ? vec{} : vv;
    rr = rr + clamped;
    const ivec fired = vv > th;
    vv = fired ? vec{} : vv;
    rr = fired ? ivec{} + refractory : rr;
    const bvec fired_bytes = __builtin_convertvector(-fired, bvec);
    std::memcpy(spk + n, &fired_bytes, sizeof(bvec));
    std::memcpy(v + n, &vv, sizeof(vec));
    std::memcpy(x + n, &xx, sizeof(vec));
    std::memcpy(r + n, &rr, sizeof(ivec));
    cc = cc - fired;
    std::memcpy(count + n, &cc, sizeof(ivec));
  }
  lif_step_scalar(v, x, r, cur, spk, count, n, N, tm, ts, th, refractory);
}

#ifdef __AVX2__
// byte_lanes.of[m]: the 8 bytes (0 or 1) of the 8-bit mask m: byte i is bit i (lane i fired)
struct ByteLanes {
  uint64_t of[256];
  ByteLanes() {
    for (int m = 0; m < 256; ++m) {
      of[m] = 0;
      for (int i = 0; i < 8; ++i) if (m >> i & 1) of[m] |= uint64_t(1) << (8 * i);
    }
  }
};
static const ByteLanes byte_lanes;

// x / t is x * (1 / t), rounded alike, when 1 / t is exact: t a power of two (the authors' tau_m = 64, tau_s = 8)
inline bool exact_reciprocal(double t) {
  int exponent;
  return std::frexp(t, &exponent) == 0.5;
}

// lif_step_plain for float in AVX2 registers, 8 neurons at a time: the same IEEE operations in the same order
// (so bit-identical), without the generic vectors' lane-by-lane conversions of the masks (5-7x faster);
// Multiply: the time constants are powers of two, and each division is the multiplication by the
// reciprocal (the same result, a tenth of the cost).
template <bool Multiply>
inline void lif_step_avx(float* v, float* x, int32_t* r, const float* cur, bool* spk, int32_t* count, int64_t N,
                         float tm, float ts, float th, int32_t refractory) {
  const __m256 vtm = _mm256_set1_ps(Multiply ? 1.0f / tm : tm), vts = _mm256_set1_ps(Multiply ? 1.0f / ts : ts);
  const __m256 vth = _mm256_set1_ps(th);
  const __m256i zero = _mm256_setzero_si256(), vref = _mm256_set1_epi32(refractory);
  auto over = [](__m256 a, __m256 t) { return Multiply ? _mm256_mul_ps(a, t) : _mm256_div_ps(a, t); };
  int64_t n = 0;
  for (; n + 8 <= N; n += 8) {
    __m256 vv = _mm256_loadu_ps(v + n), xx = _mm256_loadu_ps(x + n);
    vv = _mm256_sub_ps(vv, over(vv, vtm));
    xx = _mm256_sub_ps(xx, over(xx, vts));
    xx = _mm256_add_ps(xx, _mm256_loadu_ps(cur + n));
    vv = _mm256_add_ps(vv, over(xx, vts));
    __m256i rr = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r + n));
    const __m256i clamped = _mm256_cmpgt_epi32(rr, zero);  // -1 where r > 0
    vv = _mm256_andnot_ps(_mm256_castsi256_ps(clamped), vv);
    rr = _mm256_add_epi32(rr, clamped);
    const __m256 fired = _mm256_cmp_ps(vv, vth, _CMP_GT_OQ);
    vv = _mm256_andnot_ps(fired, vv);
    const __m256i firedi = _mm256_castps_si256(fired);
    rr = _mm256_blendv_epi8(rr, vref, firedi);
    _mm256_storeu_ps(v + n, vv);
    _mm256_storeu_ps(x + n, xx);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(r + n), rr);
    __m256i cc = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(count + n));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(count + n), _mm256_sub_epi32(cc, firedi));
    const uint64_t bytes = byte_lanes.of[_mm256_movemask_ps(fired)];
    std::memcpy(spk + n, &bytes, 8);
  }
  lif_step_scalar(v, x, r, cur, spk, count, n, N, tm, ts, th, refractory);
}

template <>
inline void lif_step_plain<float>(float* v, float* x, int32_t* r, const float* cur, bool* spk, int32_t* count, int64_t N,
                                  float tm, float ts, float th, int32_t refractory) {
  if (exact_reciprocal(tm) && exact_reciprocal(ts))
    lif_step_avx<true>(v, x, r, cur, spk, count, N, tm, ts, th, refractory);
  else
    lif_step_avx<false>(v, x, r, cur, spk, count, N, tm, ts, th, refractory);
}
#endif

// The input spikes of one sample of a T x B x N boolean raster, step by step: the neurons firing at
// step t are idx[off[t] .. off[t + 1]), ascending.
struct StepEvents {
  std::vector<int64_t> off;
  std::vector<int32_t> idx;
};

void step_events(const bool* raster, int64_t T, int64_t B, int64_t N, int64_t b, StepEvents& ev) {
  ev.off.assign(T + 1, 0);
  ev.idx.clear();
  std::vector<int64_t> active;
  for (int64_t t = 0; t < T; ++t) {
    active_indices(raster + (t * B + b) * N, N, active);
    for (int64_t j : active) ev.idx.push_back(int32_t(j));
    ev.off[t + 1] = int64_t(ev.idx.size());
  }
}

// The spike trains of one sample of a T x B x N boolean raster, neuron by neuron: the steps at which
// neuron j fires are times[off[j] .. off[j + 1]), ascending.
struct Trains {
  std::vector<int64_t> off;
  std::vector<int64_t> times;
  int64_t count(int64_t j) const { return off[j + 1] - off[j]; }
  const int64_t* of(int64_t j) const { return times.data() + off[j]; }
};

// The event lists of a raster as the forward kernels hand them on (raster_events): off (B x (T + 1), int64:
// sample b's events of step t are idx[off[b][t] .. off[b][t + 1])) and idx (int32, ascending within a step).
// Empty tensors: none given, the raster is scanned instead.
struct GivenEvents {
  const int64_t* off = nullptr;
  const int32_t* idx = nullptr;
};

GivenEvents given_events(const torch::Tensor& off, const torch::Tensor& idx, int64_t T, int64_t B) {
  if (off.numel() == 0) return {};
  TORCH_CHECK(off.scalar_type() == torch::kInt64 && idx.scalar_type() == torch::kInt32 && off.is_contiguous() &&
                  idx.is_contiguous() && off.numel() == B * (T + 1),
              "event lists: off (B x (T + 1), int64) and idx (int32) of the raster, as the forward kernels return them");
  return {off.data_ptr<int64_t>(), idx.data_ptr<int32_t>()};
}

// Sample b's step events: copied from the given lists, or scanned from the raster (T x B x N).
void sample_events(const bool* raster, const GivenEvents& given, int64_t T, int64_t B, int64_t N, int64_t b,
                   StepEvents& ev) {
  if (given.off == nullptr) {
    step_events(raster, T, B, N, b, ev);
    return;
  }
  const int64_t* o = given.off + b * (T + 1);
  ev.off.resize(T + 1);
  for (int64_t t = 0; t <= T; ++t) ev.off[t] = o[t] - o[0];
  ev.idx.assign(given.idx + o[0], given.idx + o[T]);
}

// The event lists of every sample of a raster (T x B x N) as the two tensors of GivenEvents.
std::vector<torch::Tensor> raster_events(const bool* raster, int64_t T, int64_t B, int64_t N) {
  std::vector<StepEvents> events(B);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) step_events(raster, T, B, N, b, events[b]);
  });
  auto off = torch::empty({B, T + 1}, torch::TensorOptions().dtype(torch::kInt64));
  int64_t total = 0;
  for (const StepEvents& ev : events) total += int64_t(ev.idx.size());
  auto idx = torch::empty({total}, torch::TensorOptions().dtype(torch::kInt32));
  int64_t* o = off.data_ptr<int64_t>();
  int32_t* ix = idx.data_ptr<int32_t>();
  int64_t base = 0;
  for (int64_t b = 0; b < B; ++b) {
    for (int64_t t = 0; t <= T; ++t) o[b * (T + 1) + t] = base + events[b].off[t];
    std::copy(events[b].idx.begin(), events[b].idx.end(), ix + base);
    base += int64_t(events[b].idx.size());
  }
  return {off, idx};
}

// Sample b's spike trains, from its step events (given, or scanned from the raster).
void sample_trains(const bool* raster, const GivenEvents& given, int64_t T, int64_t B, int64_t N, int64_t b,
                   Trains& tr) {
  StepEvents ev;
  sample_events(raster, given, T, B, N, b, ev);
  tr.off.assign(N + 1, 0);
  for (int32_t j : ev.idx) tr.off[j + 1] += 1;
  for (int64_t j = 0; j < N; ++j) tr.off[j + 1] += tr.off[j];
  tr.times.resize(ev.idx.size());
  std::vector<int64_t> fill(tr.off.begin(), tr.off.end() - 1);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = ev.off[t]; e < ev.off[t + 1]; ++e) tr.times[fill[ev.idx[e]]++] = t;
}

// The pre and post spike trains of every sample of a backward pass (rasters T x B x N_in and T x B x N, each
// with its event lists when the forward kernels handed them on).
void batch_trains(const bool* in, const torch::Tensor& in_off, const torch::Tensor& in_idx, int64_t Nin, const bool* po,
                  const torch::Tensor& post_off, const torch::Tensor& post_idx, int64_t N, int64_t T, int64_t B,
                  std::vector<Trains>& pre, std::vector<Trains>& post) {
  const GivenEvents in_given = given_events(in_off, in_idx, T, B), post_given = given_events(post_off, post_idx, T, B);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      sample_trains(in, in_given, T, B, Nin, b, pre[b]);
      sample_trains(po, post_given, T, B, N, b, post[b]);
    }
  });
}

// A conv layer's geometry: input C_in x H x W, output C_out x Ho x Wo, kernel k, stride s, padding p.
// Output (x, y) sees input (s x + i - p, s y + j - p) through kernel entry (i, j).
struct ConvGeometry {
  int64_t cin, h, w, cout, ho, wo, k, s, p;
  int64_t field() const { return cin * k * k; }  // kernel entries per output channel
  // The output rows (or columns) [lo, hi] that input row u reaches: 0 <= u + p - s x < k.
  void reach(int64_t u, int64_t out, int64_t& lo, int64_t& hi) const {
    const int64_t a = u + p - k + 1;
    lo = a <= 0 ? 0 : (a + s - 1) / s;
    hi = std::min<int64_t>((u + p) / s, out - 1);
  }
};

// Where each input q of a conv layer reaches (ConvGeometry::reach), computed once per call: kernel
// offset of its channel, and the output rows x0..x1 and columns y0..y1 it feeds.
struct InputReach {
  int32_t kernel, u, w, x0, x1, y0, y1;
};

std::vector<InputReach> input_reach(const ConvGeometry& g) {
  std::vector<InputReach> table(g.cin * g.h * g.w);
  for (int64_t ci = 0; ci < g.cin; ++ci)
    for (int64_t u = 0; u < g.h; ++u)
      for (int64_t w = 0; w < g.w; ++w) {
        int64_t x0, x1, y0, y1;
        g.reach(u, g.ho, x0, x1);
        g.reach(w, g.wo, y0, y1);
        table[(ci * g.h + u) * g.w + w] = {int32_t(ci * g.k * g.k), int32_t(u), int32_t(w), int32_t(x0), int32_t(x1),
                                           int32_t(y0), int32_t(y1)};
      }
  return table;
}

// The receptive field of every output position of a conv layer: the input index of kernel entry f
// (of C_in x k x k) at position n is field[n * F + f], -1 where it falls on the zero padding.
std::vector<int64_t> receptive_fields(const ConvGeometry& g) {
  const int64_t F = g.field();
  std::vector<int64_t> field(g.ho * g.wo * F);
  for (int64_t ox = 0; ox < g.ho; ++ox)
    for (int64_t oy = 0; oy < g.wo; ++oy)
      for (int64_t ci = 0; ci < g.cin; ++ci)
        for (int64_t i = 0; i < g.k; ++i)
          for (int64_t j = 0; j < g.k; ++j) {
            const int64_t u = g.s * ox + i - g.p, w = g.s * oy + j - g.p;
            field[(ox * g.wo + oy) * F + (ci * g.k + i) * g.k + j] =
                (u >= 0 && u < g.h && w >= 0 && w < g.w) ? (ci * g.h + u) * g.w + w : -1;
          }
  return field;
}

// f(b, c) for every (sample, output channel) item of a batch, the items split among the threads.
template <typename F>
void for_channels(int64_t B, int64_t C, const F& f) {
  at::parallel_for(0, B * C, 1, [&](int64_t a, int64_t z) {
    for (int64_t item = a; item < z; ++item) f(item / C, item % C);
  });
}

}  // namespace

constexpr int64_t BLOCK = 8;  // output channels that conv_lif simulates together: one AVX2 vector of floats

// The BLOCK lanes of a block of channels as one vector (GCC/Clang vector extensions).
template <typename scalar_t>
struct BlockLanes;
template <>
struct BlockLanes<float> {
  typedef float vec __attribute__((vector_size(BLOCK * sizeof(float))));
};
template <>
struct BlockLanes<double> {
  typedef double vec __attribute__((vector_size(BLOCK * sizeof(double))));
};

// sum[l] += add[l] for the BLOCK lanes (one vector load, add and store)
template <typename scalar_t>
inline void add_lanes(scalar_t* sum, const scalar_t* add) {
  typename BlockLanes<scalar_t>::vec a, b;
  std::memcpy(&a, sum, sizeof(a));
  std::memcpy(&b, add, sizeof(b));
  a += b;
  std::memcpy(sum, &a, sizeof(a));
}

// sum over m < M of the BLOCK lanes of q at row times[m] (q: rows of BLOCK values), in four partial sums
// so that the additions do not wait on each other.
template <typename scalar_t>
inline typename BlockLanes<scalar_t>::vec row_sum(const scalar_t* q, const int64_t* times, int64_t M) {
  using vec = typename BlockLanes<scalar_t>::vec;
  const auto row = [&](int64_t m) {
    vec r;
    std::memcpy(&r, q + times[m] * BLOCK, sizeof(vec));
    return r;
  };
  vec s0{}, s1{}, s2{}, s3{};
  int64_t m = 0;
  for (; m + 4 <= M; m += 4) {
    s0 += row(m);
    s1 += row(m + 1);
    s2 += row(m + 2);
    s3 += row(m + 3);
  }
  for (; m < M; ++m) s0 += row(m);
  return (s0 + s1) + (s2 + s3);
}

// A conv kernel (C_out x F entries) by block of BLOCK output channels, channels last: entry f of channel
// block * BLOCK + l at (block * F + f) * BLOCK + l (0 past the last channel, whose lanes then never fire).
template <typename scalar_t>
std::vector<scalar_t> kernel_lanes(const scalar_t* kw, int64_t cout, int64_t F) {
  std::vector<scalar_t> lanes(((cout + BLOCK - 1) / BLOCK) * F * BLOCK, scalar_t(0));
  for (int64_t co = 0; co < cout; ++co)
    for (int64_t f = 0; f < F; ++f) lanes[((co / BLOCK) * F + f) * BLOCK + co % BLOCK] = kw[co * F + f];
  return lanes;
}

std::vector<torch::Tensor> conv_lif(torch::Tensor inputs, torch::Tensor weight, int64_t height, int64_t width, int64_t stride,
                       int64_t padding, double nu, double tau_m, double tau_s, int64_t refractory, torch::Tensor in_off,
                       torch::Tensor in_idx) {
  TORCH_CHECK(inputs.device().is_cpu() && inputs.scalar_type() == torch::kBool, "conv_lif: a boolean CPU raster");
  auto S = inputs.contiguous();
  auto K = weight.contiguous();  // C_out x C_in x k x k
  const int64_t k = K.size(2);
  const ConvGeometry g{K.size(1), height, width, K.size(0), (height + 2 * padding - k) / stride + 1,
                       (width + 2 * padding - k) / stride + 1, k, stride, padding};
  const int64_t T = S.size(0), B = S.size(1), Nin = S.size(2), plane = g.ho * g.wo, N = g.cout * plane;
  const int64_t F = g.field(), blocks = (g.cout + BLOCK - 1) / BLOCK;
  TORCH_CHECK(Nin == g.cin * g.h * g.w, "conv_lif: the raster does not have C_in x H x W inputs");
  auto spikes = torch::zeros({T, B, N}, torch::TensorOptions().dtype(torch::kBool));  // only spikes are written
  auto counts = torch::empty({B, N}, torch::TensorOptions().dtype(K.scalar_type()));
  const bool* in = S.data_ptr<bool>();
  bool* out = spikes.data_ptr<bool>();
  const GivenEvents given = given_events(in_off, in_idx, T, B);
  std::vector<StepEvents> events(B);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) sample_events(in, given, T, B, Nin, b, events[b]);
  });
  const std::vector<InputReach> reach = input_reach(g);
  AT_DISPATCH_FLOATING_TYPES(K.scalar_type(), "conv_lif", [&] {
    using count_t = typename Lanes<scalar_t>::count_t;
    const std::vector<scalar_t> lanes = kernel_lanes(K.data_ptr<scalar_t>(), g.cout, F);
    const scalar_t tm = tau_m, ts = tau_s, th = nu;
    // one item: a sample's block of channels, its state position-major (position n, lane l at n * BLOCK + l),
    // so that each input spike adds whole vectors of kernel entries and the LIF step runs over one array
    for_channels(B, blocks, [&](int64_t b, int64_t block) {
      const int64_t M = plane * BLOCK, c0 = block * BLOCK, nc = std::min(BLOCK, g.cout - c0);
      const uint64_t real = nc == BLOCK ? ~uint64_t(0) : (uint64_t(1) << (8 * nc)) - 1;  // the lanes of channels
      std::vector<scalar_t> v(M), x(M), cur(M), next(M);
      std::vector<count_t> r(M), count(M);
      std::vector<uint8_t> fired(M);
      const StepEvents& ev = events[b];
      const scalar_t* kb = lanes.data() + block * F * BLOCK;
      // Output rows lo..hi have had input; outside them every neuron is still at rest (v = x = r = 0, no
      // current), where a LIF step changes nothing and fires nothing: those rows are not stepped (the
      // blank borders of an image).
      int64_t lo = g.ho, hi = -1;
      const int64_t row_lanes = g.wo * BLOCK;
      for (int64_t t = 0; t < T; ++t) {
        // I[t] of the block: the kernel footprint of every input firing at t; it reaches the neuron at t + 1
        if (hi >= lo) std::fill(next.begin() + lo * row_lanes, next.begin() + (hi + 1) * row_lanes, scalar_t(0));
        for (int64_t e = ev.off[t]; e < ev.off[t + 1]; ++e) {
          const InputReach& in_q = reach[ev.idx[e]];
          const scalar_t* kk = kb + in_q.kernel * BLOCK;
          if (in_q.x0 <= in_q.x1) {
            lo = std::min<int64_t>(lo, in_q.x0);
            hi = std::max<int64_t>(hi, in_q.x1);
          }
          for (int64_t ox = in_q.x0; ox <= in_q.x1; ++ox) {
            const int64_t base = (in_q.u + g.p - g.s * ox) * g.k + in_q.w + g.p;  // kernel entry (i, j) at oy: base - s oy
            scalar_t* dst = next.data() + (ox * g.wo + in_q.y0) * BLOCK;
            const scalar_t* src = kk + (base - g.s * in_q.y0) * BLOCK;
            for (int64_t oy = in_q.y0; oy <= in_q.y1; ++oy, dst += BLOCK, src -= g.s * BLOCK) add_lanes(dst, src);
          }
        }
        if (t != 0 && hi >= lo) {  // no spike is possible at t = 0 (the zero state only decays)
          const int64_t o = lo * row_lanes, n_end = (hi + 1) * g.wo;
          lif_step_plain(v.data() + o, x.data() + o, r.data() + o, cur.data() + o,
                         reinterpret_cast<bool*>(fired.data()) + o, count.data() + o, (hi + 1 - lo) * row_lanes, tm, ts,
                         th, count_t(refractory));
          bool* row = out + (t * B + b) * N + c0 * plane;
          int64_t n = lo * g.wo;
#ifdef __AVX2__
          // four positions (32 lane bytes) at a time: bit i of the mask is lane i % 8 of position n + i / 8
          const uint32_t real4 = ((uint32_t(1) << nc) - 1) * 0x01010101u;  // the lanes of channels, per position
          for (; n + 4 <= n_end; n += 4) {
            const __m256i bytes = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(fired.data() + n * BLOCK));
            for (uint32_t mask = uint32_t(_mm256_movemask_epi8(_mm256_slli_epi16(bytes, 7))) & real4; mask != 0;
                 mask &= mask - 1) {
              const int bit = __builtin_ctz(mask);
              row[(bit % 8) * plane + n + bit / 8] = true;
            }
          }
#endif
          for (; n < n_end; ++n) {
            uint64_t lanes_fired;  // BLOCK = 8 bytes, one per lane
            std::memcpy(&lanes_fired, fired.data() + n * BLOCK, 8);
            lanes_fired &= real;
            for (; lanes_fired != 0; lanes_fired &= lanes_fired - 1)
              row[(__builtin_ctzll(lanes_fired) / 8) * plane + n] = true;
          }
        }
        std::swap(cur, next);
      }
      scalar_t* counted = counts.data_ptr<scalar_t>() + b * N + c0 * plane;
      for (int64_t l = 0; l < nc; ++l)
        for (int64_t n = 0; n < plane; ++n) counted[l * plane + n] = scalar_t(count[n * BLOCK + l]);
    });
  });
  std::vector<torch::Tensor> out_events = raster_events(out, T, B, N);
  return {spikes, counts, out_events[0], out_events[1]};
}

std::vector<torch::Tensor> pool_lif(torch::Tensor inputs, int64_t channels, int64_t height, int64_t width, int64_t size,
                       bool as_double, double nu, double tau_m, double tau_s, int64_t refractory, torch::Tensor in_off,
                       torch::Tensor in_idx) {
  TORCH_CHECK(inputs.device().is_cpu() && inputs.scalar_type() == torch::kBool, "pool_lif: a boolean CPU raster");
  auto S = inputs.contiguous();
  const int64_t T = S.size(0), B = S.size(1), Nin = S.size(2), ho = height / size, wo = width / size;
  const int64_t area = height * width, plane = ho * wo, N = channels * plane;
  TORCH_CHECK(Nin == channels * area, "pool_lif: the raster does not have C x H x W inputs");
  auto spikes = torch::empty({T, B, N}, torch::TensorOptions().dtype(torch::kBool));
  if (T > 0) spikes.select(0, 0).zero_();  // no spike at t = 0; every later row is written by the LIF steps
  auto counts = torch::empty({B, N}, torch::TensorOptions().dtype(as_double ? torch::kFloat64 : torch::kFloat32));
  const bool* in = S.data_ptr<bool>();
  bool* out = spikes.data_ptr<bool>();
  const GivenEvents given = given_events(in_off, in_idx, T, B);
  std::vector<StepEvents> events(B);
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) sample_events(in, given, T, B, Nin, b, events[b]);
  });
  std::vector<int32_t> target(Nin);  // the window (output index within its channel) of each input, -1: none
  for (int64_t q = 0; q < Nin; ++q) {
    const int64_t u = q % area / width / size, w = q % width / size;
    target[q] = u < ho && w < wo ? int32_t(u * wo + w) : -1;  // the last rows/columns may lie outside every window
  }
  AT_DISPATCH_FLOATING_TYPES(as_double ? torch::kFloat64 : torch::kFloat32, "pool_lif", [&] {
    const scalar_t tm = tau_m, ts = tau_s, th = nu;
    for_channels(B, channels, [&](int64_t b, int64_t c) {
      std::vector<scalar_t> v(plane), x(plane), cur(plane), next(plane);
      std::vector<typename Lanes<scalar_t>::count_t> r(plane), count(plane);
      const StepEvents& ev = events[b];
      for (int64_t t = 0; t < T; ++t) {
        std::fill(next.begin(), next.end(), scalar_t(0));
        // the step's inputs of channel c: a contiguous run of the ascending list
        const int32_t* first = ev.idx.data() + ev.off[t];
        const int32_t* last = ev.idx.data() + ev.off[t + 1];
        const int32_t* e = std::lower_bound(first, last, int32_t(c * area));
        for (; e != last && *e < (c + 1) * area; ++e)
          if (target[*e] >= 0) next[target[*e]] += scalar_t(1);
        if (t != 0)
          lif_step_plain(v.data(), x.data(), r.data(), cur.data(), out + (t * B + b) * N + c * plane, count.data(),
                         plane, tm, ts, th, refractory);
        std::swap(cur, next);
      }
      scalar_t* counted = counts.data_ptr<scalar_t>() + b * N + c * plane;
      for (int64_t n = 0; n < plane; ++n) counted[n] = scalar_t(count[n]);
    });
  });
  std::vector<torch::Tensor> out_events = raster_events(out, T, B, N);
  return {spikes, counts, out_events[0], out_events[1]};
}

std::vector<torch::Tensor> conv_backward(torch::Tensor inputs, torch::Tensor post, torch::Tensor weight,
                                         torch::Tensor delta, torch::Tensor lateral_factor, int64_t height,
                                         int64_t width, int64_t stride, int64_t padding, double nu, double tau_m,
                                         double tau_s, int64_t refractory, bool shift, bool window, bool side_effect,
                                         bool fallbacks, double silent_value, bool need_below, bool per_sample,
                                         torch::Tensor pre_off, torch::Tensor pre_idx, torch::Tensor post_off,
                                         torch::Tensor post_idx) {
  TORCH_CHECK(inputs.scalar_type() == torch::kBool && post.scalar_type() == torch::kBool,
              "conv_backward: boolean rasters");
  auto S = inputs.contiguous();  // T x B x N_in
  auto P = post.contiguous();    // T x B x N
  auto K = weight.contiguous();  // C_out x C_in x k x k
  auto D = delta.contiguous();   // B x N
  const bool has_lateral = lateral_factor.numel() > 0;
  auto L = has_lateral ? lateral_factor.contiguous() : lateral_factor;
  const int64_t k = K.size(2);
  const ConvGeometry g{K.size(1), height, width, K.size(0), (height + 2 * padding - k) / stride + 1,
                       (width + 2 * padding - k) / stride + 1, k, stride, padding};
  const int64_t T = S.size(0), B = S.size(1), Nin = S.size(2), plane = g.ho * g.wo, N = g.cout * plane;
  const int64_t F = g.field();
  TORCH_CHECK(Nin == g.cin * g.h * g.w && P.size(2) == N, "conv_backward: rasters and geometry disagree");
  auto opts = K.options();
  auto grad = per_sample ? torch::zeros({B, g.cout, g.cin, k, k}, opts) : torch::zeros_like(K);
  auto below = need_below ? torch::zeros({B, Nin}, opts) : torch::empty({0}, opts);
  const PspParams p = psp_params(tau_m, tau_s, refractory, shift, window, T);
  const bool* in = S.data_ptr<bool>();
  const bool* po = P.data_ptr<bool>();
  std::vector<Trains> pre(B), postt(B);
  batch_trains(in, pre_off, pre_idx, Nin, po, post_off, post_idx, N, T, B, pre, postt);
  const std::vector<int64_t> fields = receptive_fields(g);
  const int64_t blocks = (g.cout + BLOCK - 1) / BLOCK;
  AT_DISPATCH_FLOATING_TYPES(K.scalar_type(), "conv_backward", [&] {
    const scalar_t* kw = K.data_ptr<scalar_t>();
    const scalar_t* dl = D.data_ptr<scalar_t>();
    const scalar_t* lf = has_lateral ? L.data_ptr<scalar_t>() : nullptr;
    scalar_t* gr = grad.data_ptr<scalar_t>();
    scalar_t* bl = need_below ? below.data_ptr<scalar_t>() : nullptr;
    const scalar_t th = nu, e_silent = silent_value;
    const std::vector<scalar_t> lanes = kernel_lanes(kw, g.cout, F);
    // one item: a sample's block of BLOCK output channels, whose neurons at one position share their
    // receptive field: its input spikes are read once for all of them, each adding a vector of Q values
    // each chunk's sums (the kernel gradient; the error sent to its samples b_first ..), added up in chunk order
    // after the parallel loop: the sums do not depend on which thread finished first
    struct Part {
      int64_t b_first = -1;
      std::vector<scalar_t> g_sum, below_sum;
    };
    std::vector<Part> parts(at::get_num_threads());
    at::parallel_for(0, B * blocks, 1, [&](int64_t a, int64_t z) {
      const int64_t b_first = a / blocks, b_last = (z - 1) / blocks;
      Part& part = parts[at::get_thread_num()];
      part.b_first = b_first;
      std::vector<scalar_t>& g_sum = part.g_sum;
      std::vector<scalar_t>& below_sum = part.below_sum;
      g_sum.assign(per_sample ? 0 : g.cout * F, scalar_t(0));
      below_sum.assign(need_below ? (b_last - b_first + 1) * Nin : 0, scalar_t(0));
      std::vector<scalar_t> q(T * BLOCK), e(F * BLOCK), g_lanes(F * BLOCK);
      std::vector<double> cm(T), cs(T);
      for (int64_t item = a; item < z; ++item) {
        const int64_t b = item / blocks, block = item % blocks, c0 = block * BLOCK;
        const int64_t nc = std::min(BLOCK, g.cout - c0);
        const Trains& in_tr = pre[b];
        const Trains& out_tr = postt[b];
        const scalar_t* kb = lanes.data() + block * F * BLOCK;
        std::fill(g_lanes.begin(), g_lanes.end(), scalar_t(0));
        scalar_t* bb = need_below ? below_sum.data() + (b - b_first) * Nin : nullptr;
        for (int64_t n = 0; n < plane; ++n) {
          const int64_t* field = fields.data() + n * F;  // input index of each kernel entry, -1 on the padding
          // per lane l (channel c0 + l): its spike count, delta / nu, lateral factor, Q (T x BLOCK, 0 for silent lanes)
          int64_t a_out[BLOCK] = {};
          scalar_t d[BLOCK] = {}, lat[BLOCK], vo[BLOCK] = {};
          int64_t last = -1;  // Q is 0 after the last spike of every lane
          for (int64_t l = 0; l < nc; ++l) {
            const int64_t o = (c0 + l) * plane + n;
            a_out[l] = out_tr.count(o);
            d[l] = dl[b * N + o] / th;
            lat[l] = has_lateral ? lf[b * N + o] : scalar_t(1);
            if (a_out[l] > 0) last = std::max(last, out_tr.of(o)[a_out[l] - 1]);
          }
          for (int64_t l = nc; l < BLOCK; ++l) lat[l] = 0;
          if (last >= 0) {
            std::fill(q.begin(), q.begin() + (last + 1) * BLOCK, scalar_t(0));
            for (int64_t l = 0; l < nc; ++l)
              if (a_out[l] > 0)
                neuron_spike_weights(out_tr.of((c0 + l) * plane + n), a_out[l], T, p, cm.data(), cs.data(),
                                     q.data() + l, BLOCK);
          }
          // e_{o|q} = sum over the spikes of q (up to the last spike of the block) of Q[o, t], the BLOCK neurons o
          // at once; weighted[l] = sum over q of K[o, q] e_{o|q} (the side effect's numerator)
          using vec = typename BlockLanes<scalar_t>::vec;
          vec weighted{};
          for (int64_t f = 0; f < F; ++f) {
            vec sum{};
            if (last >= 0 && field[f] >= 0) {
              const int64_t* ts_ = in_tr.of(field[f]);
              int64_t M = in_tr.count(field[f]);
              while (M > 0 && ts_[M - 1] > last) --M;  // few spikes come after the block's last (often none)
              sum = row_sum(q.data(), ts_, M);
            }
            vec kf;
            std::memcpy(&kf, kb + f * BLOCK, sizeof(vec));
            std::memcpy(e.data() + f * BLOCK, &sum, sizeof(vec));
            weighted += kf * sum;
          }
          bool silent_any = false;
          for (int64_t l = 0; l < nc; ++l) {
            if (a_out[l] > 0) {
              const scalar_t side = side_effect ? weighted[l] / (th * scalar_t(a_out[l])) : scalar_t(0);
              vo[l] = d[l] * (scalar_t(1) + side) * lat[l];
            } else {  // a silent post neuron: e = silent_value for every active input, rho = 0.5 (fallbacks)
              scalar_t fan_in = 0;
              for (int64_t f = 0; f < F; ++f)
                if (field[f] >= 0) fan_in += kb[f * BLOCK + l];
              const scalar_t side = side_effect && fallbacks ? scalar_t(0.5) * fan_in / th : scalar_t(0);
              vo[l] = d[l] * (scalar_t(1) + side) * lat[l];
              silent_any = true;
            }
          }
          if (silent_any)  // a silent lane's e: silent_value where its input fires, else 0
            for (int64_t f = 0; f < F; ++f) {
              const scalar_t value = field[f] >= 0 && in_tr.count(field[f]) > 0 ? e_silent : scalar_t(0);
              for (int64_t l = 0; l < nc; ++l)
                if (a_out[l] == 0) e[f * BLOCK + l] = value;
            }
          for (int64_t f = 0; f < F; ++f)
            for (int64_t l = 0; l < BLOCK; ++l) g_lanes[f * BLOCK + l] += vo[l] * e[f * BLOCK + l];
          if (need_below) {
            // delta_q += sum over the lanes of delta_o / nu * K[o, q] * R_oq, R = e / a_q where the input fires (a
            // silent lane's e is silent_value there); fallbacks: R = 1 where the input or the post is silent
            vec dv{}, dfire{}, dsil{};  // delta / nu of all, of the firing and of the silent lanes (0 past nc)
            for (int64_t l = 0; l < nc; ++l) {
              dv[l] = d[l];
              (a_out[l] > 0 ? dfire : dsil)[l] = d[l];
            }
            const auto lanes_sum = [](vec v) {
              scalar_t total = 0;
              for (int64_t l = 0; l < BLOCK; ++l) total += v[l];
              return total;
            };
            for (int64_t f = 0; f < F; ++f) {
              if (field[f] < 0) continue;
              const int64_t a_q = in_tr.count(field[f]);
              vec kf, ef;
              std::memcpy(&kf, kb + f * BLOCK, sizeof(vec));
              scalar_t sum = 0;
              if (a_q > 0) {
                std::memcpy(&ef, e.data() + f * BLOCK, sizeof(vec));
                sum = fallbacks ? lanes_sum(dfire * kf * ef) / scalar_t(a_q) + lanes_sum(dsil * kf)
                                : lanes_sum(dv * kf * ef) / scalar_t(a_q);
              } else if (fallbacks) {
                sum = lanes_sum(dv * kf);
              }
              bb[field[f]] += sum;
            }
          }
        }
        for (int64_t l = 0; l < nc; ++l) {
          scalar_t* gc = per_sample ? gr + (b * g.cout + c0 + l) * F : g_sum.data() + (c0 + l) * F;
          for (int64_t f = 0; f < F; ++f) gc[f] += g_lanes[f * BLOCK + l];
        }
      }
    });
    for (const Part& part : parts) {
      if (part.b_first < 0) continue;
      for (size_t f = 0; f < part.g_sum.size(); ++f) gr[f] += part.g_sum[f];
      for (size_t f = 0; f < part.below_sum.size(); ++f) bl[part.b_first * Nin + int64_t(f)] += part.below_sum[f];
    }
  });
  return {grad, below};
}

torch::Tensor pool_backward(torch::Tensor inputs, torch::Tensor post, torch::Tensor delta, int64_t channels,
                            int64_t height, int64_t width, int64_t size, double tau_m, double tau_s,
                            int64_t refractory, bool shift, bool window, bool fallbacks, torch::Tensor in_off,
                            torch::Tensor in_idx, torch::Tensor post_off, torch::Tensor post_idx) {
  TORCH_CHECK(inputs.scalar_type() == torch::kBool && post.scalar_type() == torch::kBool,
              "pool_backward: boolean rasters");
  auto S = inputs.contiguous();  // T x B x N_in
  auto P = post.contiguous();    // T x B x N
  auto D = delta.contiguous();   // B x N
  const int64_t T = S.size(0), B = S.size(1), Nin = S.size(2), ho = height / size, wo = width / size;
  const int64_t area = height * width, plane = ho * wo, N = channels * plane;
  TORCH_CHECK(Nin == channels * area && P.size(2) == N, "pool_backward: rasters and geometry disagree");
  auto below = torch::zeros({B, Nin}, D.options());
  const PspParams p = psp_params(tau_m, tau_s, refractory, shift, window, T);
  const bool* in = S.data_ptr<bool>();
  const bool* po = P.data_ptr<bool>();
  std::vector<Trains> pre(B), postt(B);
  batch_trains(in, in_off, in_idx, Nin, po, post_off, post_idx, N, T, B, pre, postt);
  AT_DISPATCH_FLOATING_TYPES(D.scalar_type(), "pool_backward", [&] {
    const scalar_t* dl = D.data_ptr<scalar_t>();
    scalar_t* bl = below.data_ptr<scalar_t>();
    const scalar_t area_out = scalar_t(size * size);
    // each input lies in at most one window: the (sample, channel) items write disjoint entries
    for_channels(B, channels, [&](int64_t b, int64_t c) {
      std::vector<scalar_t> q(T);
      std::vector<double> cm(T), cs(T);
      const Trains& in_tr = pre[b];
      const Trains& out_tr = postt[b];
      for (int64_t n = 0; n < plane; ++n) {
        const int64_t o = c * plane + n, ox = n / wo, oy = n % wo, a_out = out_tr.count(o);
        const scalar_t d = dl[b * N + o] / area_out;
        if (a_out > 0) {
          std::fill(q.begin(), q.end(), scalar_t(0));
          neuron_spike_weights(out_tr.of(o), a_out, T, p, cm.data(), cs.data(), q.data(), 1);
        }
        for (int64_t i = 0; i < size; ++i)
          for (int64_t j = 0; j < size; ++j) {
            const int64_t in_q = c * area + (size * ox + i) * width + size * oy + j, a_q = in_tr.count(in_q);
            scalar_t ratio = fallbacks ? scalar_t(1) : scalar_t(0);  // R = e_oq / a_q where both fire
            if (a_out > 0 && a_q > 0) {
              scalar_t e = 0;
              const int64_t* ts_ = in_tr.of(in_q);
              for (int64_t m = 0; m < a_q; ++m) e += q[ts_[m]];
              ratio = e / scalar_t(a_q);
            }
            bl[b * Nin + in_q] = d * ratio;
          }
      }
    });
  });
  return below;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  // Each call runs without the GIL: it touches no Python object, and a long one (a large batch) must not
  // stop the training child's control thread, which moves the run's fence on (worker.child.arm_fence).
  const auto no_gil = py::call_guard<py::gil_scoped_release>();
  m.def("lif_chunk", &lif_chunk, no_gil, "LIF simulation over a chunk of steps, currents given");
  m.def("dense_lif", &dense_lif, no_gil, "dense layer: event-driven input currents and LIF over a chunk of steps");
  m.def("spike_weights", &spike_weights, no_gil, "S-PSP spike weights Q (B x N x T) of a post raster");
  m.def("dense_backward", &dense_backward, no_gil, "HM2-BP gradient and error sent down of a dense layer");
  m.def("conv_lif", &conv_lif, no_gil, "conv layer: event-driven kernel footprints and LIF over all steps");
  m.def("pool_lif", &pool_lif, no_gil, "pool layer: event-driven window sums and LIF over all steps");
  m.def("conv_backward", &conv_backward, no_gil, "HM2-BP kernel gradient and error sent down of a conv layer");
  m.def("pool_backward", &pool_backward, no_gil, "HM2-BP error sent down of a pool layer");
}
