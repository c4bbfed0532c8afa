// harness.cpp - stream-level C harness around the Verilated conv_accel (built by pytorch_fpga/sim/verilated/builder.py)
//
// Python never steps clock edges: every call below runs whole AXI transactions or many cycles in C++.
// Each cycle: inputs are driven, the model settles with clk low (one eval), handshakes are sampled, the
// rising edge is evaluated (one eval), then the harness updates its queues and drives the next inputs.
//
//   s_axis: bytes pushed by vs_push() leave 8 a beat (tlast on a packet's final beat); the source follows
//           AXI (tvalid stays up until the beat is taken), optionally idling (random, periodic or credit-limited)
//           between beats, and holding a transfer's first beat back for a set-up delay (vs_set_in_delay).
//   m_axis: every accepted beat's kept bytes are appended to an output buffer; tlast ends a packet there.
//           tready can be dropped (random, periodic or credit-limited backpressure).
//   Memory model (pytorch_fpga/sim/memory.py): a bandwidth limit is a periodic or credit Pattern on s_axis (and
//           optionally m_axis); the DMA's set-up and DDR latency are the in_delay gate.
//   AXI-Lite: vs_axil_write / vs_axil_read run one full transaction each within a cycle budget.
#include <cstdint>
#include <cstring>
#include <deque>
#include <vector>

#include "Vconv_accel.h"
#include "regmap_generated.h"  // pytorch_fpga/contract/regmap.py: the register map
#include "verilated.h"
#if VM_TRACE
#include "verilated_vcd_c.h"
#endif

namespace {

// run_until conditions (bit mask) and return codes; mirrored in verilated.py
constexpr uint32_t COND_OUT_LAST = 1;   // output tlasts seen (since create) >= n_last
constexpr uint32_t COND_IN_EMPTY = 2;   // every pushed byte has been accepted on s_axis
constexpr uint32_t COND_STATUS = 4;     // (STATUS & status_mask) != 0, STATUS polled over AXI-Lite
constexpr int64_t ERR_BUDGET = -1;      // the cycle budget ran out first
constexpr int64_t ERR_AXIL = -2;        // an AXI-Lite transaction did not complete
constexpr int64_t ERR_ARG = -3;         // bad argument
constexpr uint64_t AXIL_BUDGET = 1000;  // cycles one AXI-Lite transaction may take

enum PatternKind : int { PAT_NONE = 0, PAT_RANDOM = 1, PAT_PERIODIC = 2, PAT_CREDIT = 3 };
constexpr uint64_t BEAT_CREDIT = 8ull << 32;  // credit: a beat (8 bytes, partial or not) costs 8 bytes, Q32

// Decides whether a port pauses. s_axis asks once per cycle in which it would present a new beat (so a
// periodic or credit pattern does not advance while a beat waits for tready, or while no data is queued);
// m_axis asks every cycle.
struct Pattern {
    int kind = PAT_NONE;
    uint32_t threshold = 0;  // random: pause when 16 random bits < threshold (probability * 65536)
    uint32_t on = 1, off = 0, phase = 0;
    uint64_t state = 0x9E3779B97F4A7C15ull;
    uint64_t rate = 0, credit = 0;  // credit: bytes of credit added per call (Q32), bytes held (Q32)

    bool pause() {
        if (kind == PAT_RANDOM) {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17;  // xorshift64
            return (uint32_t)(state >> 48) < threshold;
        }
        if (kind == PAT_PERIODIC) {
            uint32_t p = phase;
            phase = (phase + 1 == on + off) ? 0 : phase + 1;
            return p >= on;
        }
        if (kind == PAT_CREDIT) {  // a token bucket that holds at most one beat plus one call's rate
            credit += rate;
            if (credit < BEAT_CREDIT) return true;
            credit -= BEAT_CREDIT;
            return false;
        }
        return false;
    }
};

enum AxilState : int { AX_IDLE, AX_WRITE, AX_READ };

struct Sim {
    VerilatedContext* ctx = nullptr;
    Vconv_accel* top = nullptr;
#if VM_TRACE
    VerilatedVcdC* tfp = nullptr;
#endif
    uint64_t cycles = 0;

    std::vector<uint8_t> in_q;     // bytes pushed; in_q[in_pos:] not yet sent
    size_t in_pos = 0;
    std::deque<size_t> in_ends;    // offsets in in_q where packets end (tlast)
    uint32_t beat_len = 0;         // bytes in the beat on s_axis now (when tvalid)
    bool beat_last = false;
    bool pkt_started = false;      // beats of the current packet were taken, its tlast not yet
    uint64_t in_delay = 0;         // a transfer's first beat waits this many cycles after its push
    uint64_t in_not_before = 0;    // no beat is presented before this cycle (the current transfer's gate)

    std::vector<uint8_t> out_q;    // bytes received; out_q[out_pos:] not yet pulled
    size_t out_pos = 0;
    std::deque<size_t> out_ends;   // offsets in out_q just past each received tlast
    uint64_t n_last = 0;           // output tlasts seen since create
    uint64_t in_beats = 0, out_beats = 0;

    Pattern idle, bp;

    int ax = AX_IDLE;
    bool ax_aw_done = false, ax_w_done = false, ax_done = false;
    uint32_t ax_rdata = 0;
    uint32_t last_status = 0xFFFFFFFFu;
};

inline void dump(Sim* s, uint64_t t) {
#if VM_TRACE
    if (s->tfp) s->tfp->dump(t);
#else
    (void)s; (void)t;
#endif
}

// Drive the next cycle's s_axis beat (if the current one was taken or none is up).
inline void drive_in(Sim* s, bool s_fire) {
    Vconv_accel* t = s->top;
    if (!t->s_axis_tvalid || s_fire) {
        size_t avail = s->in_q.size() - s->in_pos;
        bool have_end = !s->in_ends.empty();
        size_t to_end = have_end ? s->in_ends.front() - s->in_pos : (size_t)-1;
        bool ready = avail >= 8 || (have_end && to_end <= 8 && to_end > 0);
        if (ready && s->cycles >= s->in_not_before && !s->idle.pause()) {
            uint32_t n = to_end <= 8 ? (uint32_t)to_end : 8;
            uint64_t d = 0;
            std::memcpy(&d, s->in_q.data() + s->in_pos, n);  // little-endian host
            t->s_axis_tdata = d;
            t->s_axis_tlast = to_end <= 8;
            t->s_axis_tvalid = 1;
            s->beat_len = n;
            s->beat_last = to_end <= 8;
        } else {
            t->s_axis_tvalid = 0;
            t->s_axis_tlast = 0;
        }
    }
}

// One clock cycle (two evals: inputs settle with clk low, then the rising edge).
inline void tick(Sim* s) {
    Vconv_accel* t = s->top;
    t->clk = 0;
    t->eval();
    dump(s, s->cycles * 10000);
    const bool s_fire = t->s_axis_tvalid && t->s_axis_tready;
    const bool m_fire = t->m_axis_tvalid && t->m_axis_tready;
    const uint64_t m_data = t->m_axis_tdata;
    const uint8_t m_keep = t->m_axis_tkeep;
    const bool m_last = t->m_axis_tlast;
    const bool aw_fire = t->s_axil_awvalid && t->s_axil_awready;
    const bool w_fire = t->s_axil_wvalid && t->s_axil_wready;
    const bool b_fire = t->s_axil_bvalid && t->s_axil_bready;
    const bool ar_fire = t->s_axil_arvalid && t->s_axil_arready;
    const bool r_fire = t->s_axil_rvalid && t->s_axil_rready;
    const uint32_t r_data = t->s_axil_rdata;
    t->clk = 1;
    t->eval();
    dump(s, s->cycles * 10000 + 5000);
    s->cycles++;

    if (s_fire) {
        s->in_pos += s->beat_len;
        s->in_beats++;
        s->pkt_started = !s->beat_last;
        if (s->beat_last) s->in_ends.pop_front();
        if (s->in_pos == s->in_q.size() && s->in_ends.empty()) {
            s->in_q.clear();
            s->in_pos = 0;
        }
    }
    if (m_fire) {
        if (m_keep == 0xFF) {
            const uint8_t* b = reinterpret_cast<const uint8_t*>(&m_data);
            s->out_q.insert(s->out_q.end(), b, b + 8);
        } else {
            for (int i = 0; i < 8; i++)
                if (m_keep >> i & 1) s->out_q.push_back((uint8_t)(m_data >> (8 * i)));
        }
        s->out_beats++;
        if (m_last) {
            s->out_ends.push_back(s->out_q.size());
            s->n_last++;
        }
    }
    if (s->ax == AX_WRITE) {
        if (aw_fire) { t->s_axil_awvalid = 0; s->ax_aw_done = true; }
        if (w_fire) { t->s_axil_wvalid = 0; s->ax_w_done = true; }
        if (b_fire && s->ax_aw_done && s->ax_w_done) { s->ax = AX_IDLE; s->ax_done = true; }
    } else if (s->ax == AX_READ) {
        if (ar_fire) { t->s_axil_arvalid = 0; s->ax_aw_done = true; }
        if (r_fire && s->ax_aw_done) { s->ax_rdata = r_data; s->ax = AX_IDLE; s->ax_done = true; }
    }
    drive_in(s, s_fire);
    t->m_axis_tready = !s->bp.pause();
}

void axil_abort(Sim* s) {
    Vconv_accel* t = s->top;
    t->s_axil_awvalid = 0; t->s_axil_wvalid = 0; t->s_axil_arvalid = 0;
    s->ax = AX_IDLE;
}

int axil_write(Sim* s, uint32_t addr, uint32_t data) {
    Vconv_accel* t = s->top;
    t->s_axil_awaddr = addr; t->s_axil_awvalid = 1;
    t->s_axil_wdata = data; t->s_axil_wstrb = 0xF; t->s_axil_wvalid = 1;
    t->s_axil_bready = 1;
    s->ax = AX_WRITE; s->ax_aw_done = s->ax_w_done = s->ax_done = false;
    for (uint64_t i = 0; i < AXIL_BUDGET; i++) {
        tick(s);
        if (s->ax_done) return 0;
    }
    axil_abort(s);
    return (int)ERR_AXIL;
}

int axil_read(Sim* s, uint32_t addr, uint32_t* data) {
    Vconv_accel* t = s->top;
    t->s_axil_araddr = addr; t->s_axil_arvalid = 1; t->s_axil_rready = 1;
    s->ax = AX_READ; s->ax_aw_done = s->ax_done = false;
    for (uint64_t i = 0; i < AXIL_BUDGET; i++) {
        tick(s);
        if (s->ax_done) {
            *data = s->ax_rdata;
            return 0;
        }
    }
    axil_abort(s);
    return (int)ERR_AXIL;
}

void set_pattern(Pattern& p, int kind, double prob, uint32_t on, uint32_t off, uint64_t seed) {
    p = Pattern();
    p.kind = kind;
    double th = prob * 65536.0;
    p.threshold = th <= 0 ? 0 : th >= 65536.0 ? 65536u : (uint32_t)th;
    p.on = on ? on : 1;
    p.off = off;
    p.state = seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    if (!p.state) p.state = 1;
}

}  // namespace

extern "C" {

void* vs_create(const char* trace_path) {
    Sim* s = new Sim();
    s->ctx = new VerilatedContext;
    s->ctx->debug(0);
    s->ctx->fatalOnError(false);
#if VM_TRACE
    if (trace_path && *trace_path) s->ctx->traceEverOn(true);
#endif
    s->top = new Vconv_accel{s->ctx, "TOP"};
#if VM_TRACE
    if (trace_path && *trace_path) {
        s->tfp = new VerilatedVcdC;
        s->top->trace(s->tfp, 99);
        s->tfp->open(trace_path);
    }
#else
    if (trace_path && *trace_path) {  // this build has no tracing compiled in
        delete s->top; delete s->ctx; delete s;
        return nullptr;
    }
#endif
    Vconv_accel* t = s->top;
    t->clk = 0; t->rst = 1;
    t->s_axil_awvalid = 0; t->s_axil_wvalid = 0; t->s_axil_bready = 1;
    t->s_axil_arvalid = 0; t->s_axil_rready = 1; t->s_axil_wstrb = 0xF;
    t->s_axis_tvalid = 0; t->s_axis_tlast = 0; t->s_axis_tdata = 0; t->m_axis_tready = 1;
    t->eval();
    return s;
}

void vs_destroy(void* h) {
    Sim* s = static_cast<Sim*>(h);
    if (!s) return;
#if VM_TRACE
    if (s->tfp) { s->tfp->close(); delete s->tfp; }
#endif
    s->top->final();
    delete s->top;
    delete s->ctx;
    delete s;
}

int vs_has_trace(void) { return VM_TRACE ? 1 : 0; }

void vs_flush_trace(void* h) {
#if VM_TRACE
    Sim* s = static_cast<Sim*>(h);
    if (s->tfp) s->tfp->flush();
#else
    (void)h;
#endif
}

// Hard reset: drop both queues and any AXI-Lite transaction, rst high for `cycles`, then one cycle low.
void vs_reset(void* h, uint32_t cycles) {
    Sim* s = static_cast<Sim*>(h);
    Vconv_accel* t = s->top;
    s->in_q.clear(); s->in_pos = 0; s->in_ends.clear(); s->pkt_started = false;
    t->s_axis_tvalid = 0; t->s_axis_tlast = 0;
    axil_abort(s);
    t->rst = 1;
    for (uint32_t i = 0; i < (cycles ? cycles : 1); i++) tick(s);
    t->rst = 0;
    tick(s);
    s->out_q.clear(); s->out_pos = 0; s->out_ends.clear();
}

int vs_axil_write(void* h, uint32_t addr, uint32_t data) { return axil_write(static_cast<Sim*>(h), addr, data); }

int vs_axil_read(void* h, uint32_t addr, uint32_t* data) { return axil_read(static_cast<Sim*>(h), addr, data); }

// Append n bytes to the input queue; last=1 ends the packet there (tlast on its final beat).
int vs_push(void* h, const uint8_t* data, uint64_t n, int last) {
    Sim* s = static_cast<Sim*>(h);
    size_t start = s->in_ends.empty() ? s->in_pos : s->in_ends.back();
    if (last && s->in_q.size() + n == start) return (int)ERR_ARG;  // an empty packet cannot be sent
    if (s->in_pos == s->in_q.size() && !s->top->s_axis_tvalid && n)    // nothing queued: a new transfer
        s->in_not_before = s->cycles + s->in_delay;
    if (s->in_pos > (1u << 20) && s->in_pos * 2 > s->in_q.size()) {  // drop the sent prefix
        s->in_q.erase(s->in_q.begin(), s->in_q.begin() + s->in_pos);
        for (auto& e : s->in_ends) e -= s->in_pos;
        s->in_pos = 0;
    }
    s->in_q.insert(s->in_q.end(), data, data + n);
    if (last) s->in_ends.push_back(s->in_q.size());
    if (!s->top->s_axis_tvalid) drive_in(s, false);  // present the first beat this cycle
    return 0;
}

// Drop queued input. keep_current=1 acts like a DMA whose transfer is under way: a packet that has started
// (a beat taken or on the bus) still goes out to its tlast, only later packets are dropped. keep_current=0
// drops everything, withdrawing a beat on the bus (for use with a hard reset).
void vs_clear_input(void* h, int keep_current) {
    Sim* s = static_cast<Sim*>(h);
    if (keep_current && (s->pkt_started || s->top->s_axis_tvalid)) {
        if (!s->in_ends.empty()) {
            s->in_q.resize(s->in_ends.front());
            while (s->in_ends.size() > 1) s->in_ends.pop_back();
        }
        return;
    }
    s->in_q.clear(); s->in_pos = 0; s->in_ends.clear(); s->pkt_started = false;
    s->top->s_axis_tvalid = 0; s->top->s_axis_tlast = 0;
}

uint64_t vs_in_pending(void* h) {
    Sim* s = static_cast<Sim*>(h);
    return s->in_q.size() - s->in_pos;
}

uint64_t vs_out_available(void* h) {
    Sim* s = static_cast<Sim*>(h);
    return s->out_q.size() - s->out_pos;
}

// Bytes of the first complete output packet not yet pulled, or -1 when no tlast is pending.
int64_t vs_out_packet_len(void* h) {
    Sim* s = static_cast<Sim*>(h);
    if (s->out_ends.empty()) return -1;
    return (int64_t)(s->out_ends.front() - s->out_pos);
}

// Move up to max received bytes into buf; returns how many.
uint64_t vs_pull(void* h, uint8_t* buf, uint64_t max) {
    Sim* s = static_cast<Sim*>(h);
    uint64_t n = s->out_q.size() - s->out_pos;
    if (n > max) n = max;
    std::memcpy(buf, s->out_q.data() + s->out_pos, n);
    s->out_pos += n;
    while (!s->out_ends.empty() && s->out_ends.front() <= s->out_pos) s->out_ends.pop_front();
    if (s->out_pos == s->out_q.size()) {
        s->out_q.clear(); s->out_pos = 0; s->out_ends.clear();
    }
    return n;
}

uint64_t vs_out_lasts(void* h) { return static_cast<Sim*>(h)->n_last; }
uint64_t vs_cycles(void* h) { return static_cast<Sim*>(h)->cycles; }
uint64_t vs_in_beats(void* h) { return static_cast<Sim*>(h)->in_beats; }
uint64_t vs_out_beats(void* h) { return static_cast<Sim*>(h)->out_beats; }
uint32_t vs_last_status(void* h) { return static_cast<Sim*>(h)->last_status; }

// kind: 0 none, 1 random (pause with probability prob), 2 periodic (on cycles active, then off paused).
void vs_set_idle(void* h, int kind, double prob, uint32_t on, uint32_t off, uint64_t seed) {
    set_pattern(static_cast<Sim*>(h)->idle, kind, prob, on, off, seed);
}

void vs_set_backpressure(void* h, int kind, double prob, uint32_t on, uint32_t off, uint64_t seed) {
    Sim* s = static_cast<Sim*>(h);
    set_pattern(s->bp, kind, prob, on, off, seed);
}

// Credit (token bucket) limit on a port: port 0 s_axis (the source), 1 m_axis (tready). Each time the port
// asks (see Pattern) it gains rate_q32 / 2^32 bytes of credit; a beat needs 8 bytes. The first ask passes.
// rate_q32 in (0, 8 << 32]; returns 0, or ERR_ARG. Replaces the port's idle / backpressure pattern.
int vs_set_credit(void* h, int port, uint64_t rate_q32) {
    Sim* s = static_cast<Sim*>(h);
    if (port < 0 || port > 1 || rate_q32 == 0 || rate_q32 > BEAT_CREDIT) return (int)ERR_ARG;
    Pattern& p = port ? s->bp : s->idle;
    p = Pattern();
    p.kind = PAT_CREDIT;
    p.rate = rate_q32;
    p.credit = BEAT_CREDIT - rate_q32;
    return 0;
}

// A push into an empty input queue starts a transfer: its first beat is presented no earlier than `cycles`
// cycles after the push (the DMA's set-up and the memory's first-read latency). 0: at once (the default).
void vs_set_in_delay(void* h, uint64_t cycles) { static_cast<Sim*>(h)->in_delay = cycles; }

uint64_t vs_run(void* h, uint64_t n) {
    Sim* s = static_cast<Sim*>(h);
    for (uint64_t i = 0; i < n; i++) tick(s);
    return n;
}

// Run until any condition in `cond` holds; returns the cycles used, ERR_BUDGET or ERR_AXIL.
// COND_STATUS reads STATUS over AXI-Lite every `poll` cycles (like a driver polling); its value is kept
// in vs_last_status().
int64_t vs_run_until(void* h, uint32_t cond, uint64_t n_last, uint32_t status_mask, uint64_t budget,
                     uint32_t poll) {
    Sim* s = static_cast<Sim*>(h);
    if (!cond) return ERR_ARG;
    const uint64_t c0 = s->cycles;
    const uint32_t interval = poll ? poll : 16;
    uint64_t next_poll = c0;
    for (;;) {
        if ((cond & COND_OUT_LAST) && s->n_last >= n_last) return (int64_t)(s->cycles - c0);
        if ((cond & COND_IN_EMPTY) && s->in_q.size() == s->in_pos) return (int64_t)(s->cycles - c0);
        if (s->cycles - c0 >= budget) return ERR_BUDGET;
        if ((cond & COND_STATUS) && s->cycles >= next_poll) {
            uint32_t st;
            if (axil_read(s, PFA_REG_STATUS, &st)) return ERR_AXIL;
            s->last_status = st;
            if (st & status_mask) return (int64_t)(s->cycles - c0);
            next_poll = s->cycles + interval;
            continue;
        }
        tick(s);
    }
}

}  // extern "C"
