/*
 * Native commP kernel: Fr32 expansion and the SHA-256-trunc254 binary tree.
 *
 * The input is cut into units of 256 quads (256 x 127 = 32512 bytes). Each unit expands to
 * 32 KiB of Fr32 data (1024 leaves of 32 bytes), which is hashed level by level in place into
 * one subtree root of level 10. Roots go onto a stack of pending left nodes, one slot per
 * level (`layers`, with bit i of `mask` set when slot i is full), so memory stays O(log n)
 * however long the stream. The last partial unit waits in `pending`; digest() expands it on a
 * scratch copy, so digest() never changes the state and may be called again after more
 * update() calls.
 *
 * A node is SHA-256 of the 64 bytes left||right with the top two bits of byte 31 cleared.
 * SHA-256 of a 64-byte message is two compressions: the message block, then a padding block
 * that is the same for every node, so its message schedule (plus round constants) is
 * computed once at import. With SHA-NI (checked with cpuid at import) nodes are hashed two
 * at a time so the two dependency chains overlap; otherwise a portable C compression runs.
 *
 * The GIL is released while hashing. One object must not be used by two threads at once:
 * a busy flag, checked and set while holding the GIL, turns that into a RuntimeError.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <string.h>

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#define CP_HAVE_X86 1
#include <cpuid.h>
#include <immintrin.h>
#else
#define CP_HAVE_X86 0
#endif

#define QUAD_IN 127
#define QUAD_OUT 128
#define UNIT_QUADS 256
#define UNIT_IN (QUAD_IN * UNIT_QUADS)   /* 32512 input bytes */
#define UNIT_OUT (QUAD_OUT * UNIT_QUADS) /* 32768 Fr32 bytes = 1024 leaves */
#define UNIT_LEVEL 10                    /* log2(1024 leaves) */
#define MAX_LEVELS 64
#define MIN_INPUT 65

static const uint32_t K256[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2};

static const uint32_t IV256[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                  0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

/* W[i] + K[i] of the padding block of a 64-byte message: 0x80, zeros, bit length 512. */
static uint32_t PAD_WK[64];
/* Root of an all-zero subtree of each level (level 0 = one zero leaf). */
static uint8_t ZERO_NODE[MAX_LEVELS][32];
static int HAVE_SHANI = 0;

typedef void (*pairs_fn)(uint8_t *out, const uint8_t *in, size_t n);

/* ------------------------------------------------------------------ portable SHA-256 */

#define ROTR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))
#define S0(x) (ROTR(x, 2) ^ ROTR(x, 13) ^ ROTR(x, 22))
#define S1(x) (ROTR(x, 6) ^ ROTR(x, 11) ^ ROTR(x, 25))
#define G0(x) (ROTR(x, 7) ^ ROTR(x, 18) ^ ((x) >> 3))
#define G1(x) (ROTR(x, 17) ^ ROTR(x, 19) ^ ((x) >> 10))
#define CH(x, y, z) (((x) & (y)) ^ (~(x) & (z)))
#define MAJ(x, y, z) (((x) & (y)) ^ ((x) & (z)) ^ ((y) & (z)))

static inline uint32_t load_be32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static inline void store_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Runs the 64 rounds over a ready W+K array and adds the result into `st`. */
static void rounds_wk(uint32_t st[8], const uint32_t wk[64])
{
    uint32_t a = st[0], b = st[1], c = st[2], d = st[3];
    uint32_t e = st[4], f = st[5], g = st[6], h = st[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 = h + S1(e) + CH(e, f, g) + wk[i];
        uint32_t t2 = S0(a) + MAJ(a, b, c);
        h = g;
        g = f;
        f = e;
        e = d + t1;
        d = c;
        c = b;
        b = a;
        a = t1 + t2;
    }
    st[0] += a; st[1] += b; st[2] += c; st[3] += d;
    st[4] += e; st[5] += f; st[6] += g; st[7] += h;
}

static void node_portable(uint8_t out[32], const uint8_t in[64])
{
    uint32_t w[64], st[8];
    for (int i = 0; i < 16; i++)
        w[i] = load_be32(in + 4 * i);
    for (int i = 16; i < 64; i++)
        w[i] = G1(w[i - 2]) + w[i - 7] + G0(w[i - 15]) + w[i - 16];
    for (int i = 0; i < 64; i++)
        w[i] += K256[i];
    memcpy(st, IV256, sizeof st);
    rounds_wk(st, w);
    rounds_wk(st, PAD_WK);
    for (int i = 0; i < 8; i++)
        store_be32(out + 4 * i, st[i]);
    out[31] &= 0x3f;
}

static void pairs_portable(uint8_t *out, const uint8_t *in, size_t n)
{
    uint8_t tmp[32];
    for (size_t i = 0; i < n; i++) {
        /* out may alias in: node i is written over bytes that pair i already consumed. */
        node_portable(tmp, in + 64 * i);
        memcpy(out + 32 * i, tmp, 32);
    }
}

/* ------------------------------------------------------------------ SHA-NI */
#if CP_HAVE_X86

#define SHANI_TARGET __attribute__((target("sha,sse4.1,ssse3")))

/* 4 rounds: message+constant vector m, state halves s0 = ABEF, s1 = CDGH. */
#define RND4(s0, s1, m)                                      \
    do {                                                     \
        __m128i m_ = (m);                                    \
        s1 = _mm_sha256rnds2_epu32(s1, s0, m_);              \
        s0 = _mm_sha256rnds2_epu32(s0, s1, _mm_shuffle_epi32(m_, 0x0E)); \
    } while (0)

/* Next 4 schedule words into a (which holds W[t-16..t-13]); b, c, d hold the later words. */
#define SCHED(a, b, c, d) \
    a = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(a, b), _mm_alignr_epi8(d, c, 4)), d)

#define KV(i) _mm_loadu_si128((const __m128i *)(K256 + 4 * (i)))
#define PV(i) _mm_loadu_si128((const __m128i *)(PAD_WK + 4 * (i)))

/* Hashes two nodes at once: the two chains of sha256rnds2 are independent, so they overlap
 * in the pipeline instead of each waiting on its own latency. All loads come before the
 * stores, so an output may overlap its own input (in-place levels). */
SHANI_TARGET static inline __attribute__((always_inline)) void
two_nodes_shani(uint8_t *oa, uint8_t *ob, const uint8_t *pa, const uint8_t *pb)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    /* The IV in the ABEF / CDGH lane order that sha256rnds2 works in. */
    const __m128i iv_abef = _mm_set_epi32((int)IV256[0], (int)IV256[1], (int)IV256[4], (int)IV256[5]);
    const __m128i iv_cdgh = _mm_set_epi32((int)IV256[2], (int)IV256[3], (int)IV256[6], (int)IV256[7]);
    const __m128i mask31 = _mm_set_epi32(0x3fffffff, -1, -1, -1);
    __m128i a0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 0)), bswap);
    __m128i a1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 16)), bswap);
    __m128i a2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 32)), bswap);
    __m128i a3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pa + 48)), bswap);
    __m128i b0 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 0)), bswap);
    __m128i b1 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 16)), bswap);
    __m128i b2 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 32)), bswap);
    __m128i b3 = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(pb + 48)), bswap);
    __m128i sa0 = iv_abef, sa1 = iv_cdgh, sb0 = iv_abef, sb1 = iv_cdgh;

    /* Block 1: the 64-byte message. */
    RND4(sa0, sa1, _mm_add_epi32(a0, KV(0))); RND4(sb0, sb1, _mm_add_epi32(b0, KV(0)));
    RND4(sa0, sa1, _mm_add_epi32(a1, KV(1))); RND4(sb0, sb1, _mm_add_epi32(b1, KV(1)));
    RND4(sa0, sa1, _mm_add_epi32(a2, KV(2))); RND4(sb0, sb1, _mm_add_epi32(b2, KV(2)));
    RND4(sa0, sa1, _mm_add_epi32(a3, KV(3))); RND4(sb0, sb1, _mm_add_epi32(b3, KV(3)));
    for (int r = 4; r < 16; r += 4) {
        SCHED(a0, a1, a2, a3); SCHED(b0, b1, b2, b3);
        RND4(sa0, sa1, _mm_add_epi32(a0, KV(r))); RND4(sb0, sb1, _mm_add_epi32(b0, KV(r)));
        SCHED(a1, a2, a3, a0); SCHED(b1, b2, b3, b0);
        RND4(sa0, sa1, _mm_add_epi32(a1, KV(r + 1))); RND4(sb0, sb1, _mm_add_epi32(b1, KV(r + 1)));
        SCHED(a2, a3, a0, a1); SCHED(b2, b3, b0, b1);
        RND4(sa0, sa1, _mm_add_epi32(a2, KV(r + 2))); RND4(sb0, sb1, _mm_add_epi32(b2, KV(r + 2)));
        SCHED(a3, a0, a1, a2); SCHED(b3, b0, b1, b2);
        RND4(sa0, sa1, _mm_add_epi32(a3, KV(r + 3))); RND4(sb0, sb1, _mm_add_epi32(b3, KV(r + 3)));
    }
    sa0 = _mm_add_epi32(sa0, iv_abef); sa1 = _mm_add_epi32(sa1, iv_cdgh);
    sb0 = _mm_add_epi32(sb0, iv_abef); sb1 = _mm_add_epi32(sb1, iv_cdgh);

    /* Block 2: the constant padding block, schedule precomputed. */
    __m128i ha0 = sa0, ha1 = sa1, hb0 = sb0, hb1 = sb1;
    for (int r = 0; r < 16; r++) {
        __m128i wk = PV(r);
        RND4(sa0, sa1, wk);
        RND4(sb0, sb1, wk);
    }
    sa0 = _mm_add_epi32(sa0, ha0); sa1 = _mm_add_epi32(sa1, ha1);
    sb0 = _mm_add_epi32(sb0, hb0); sb1 = _mm_add_epi32(sb1, hb1);

    /* Back from ABEF/CDGH to ABCD/EFGH, big-endian, top two bits of byte 31 cleared. */
    __m128i ta = _mm_shuffle_epi32(sa0, 0x1B), tb = _mm_shuffle_epi32(sb0, 0x1B);
    sa1 = _mm_shuffle_epi32(sa1, 0xB1);
    sb1 = _mm_shuffle_epi32(sb1, 0xB1);
    __m128i oa0 = _mm_shuffle_epi8(_mm_blend_epi16(ta, sa1, 0xF0), bswap);
    __m128i oa1 = _mm_and_si128(_mm_shuffle_epi8(_mm_alignr_epi8(sa1, ta, 8), bswap), mask31);
    __m128i ob0 = _mm_shuffle_epi8(_mm_blend_epi16(tb, sb1, 0xF0), bswap);
    __m128i ob1 = _mm_and_si128(_mm_shuffle_epi8(_mm_alignr_epi8(sb1, tb, 8), bswap), mask31);
    _mm_storeu_si128((__m128i *)oa, oa0);
    _mm_storeu_si128((__m128i *)(oa + 16), oa1);
    _mm_storeu_si128((__m128i *)ob, ob0);
    _mm_storeu_si128((__m128i *)(ob + 16), ob1);
}

SHANI_TARGET static void pairs_shani(uint8_t *out, const uint8_t *in, size_t n)
{
    size_t i = 0;
    for (; i + 2 <= n; i += 2)
        two_nodes_shani(out + 32 * i, out + 32 * i + 32, in + 64 * i, in + 64 * i + 64);
    if (i < n) {
        /* An odd last node: hash it in both lanes and keep one. */
        uint8_t spare[32];
        two_nodes_shani(out + 32 * i, spare, in + 64 * i, in + 64 * i);
    }
}

static int detect_shani(void)
{
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d))
        return 0;
    if (!(c & (1u << 9)) || !(c & (1u << 19))) /* SSSE3, SSE4.1 */
        return 0;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    return (b >> 29) & 1; /* SHA extensions */
}
#endif /* CP_HAVE_X86 */

/* ------------------------------------------------------------------ tree */

/* Fr32: each 254-bit little-endian chunk of a 127-byte quad goes into its own 32 bytes,
 * with the two top bits zero. Chunk k starts at bit 254k = 8 * 31k + 6k, so chunks 0..3
 * start at bytes 0, 31, 63, 95 with bit shifts 0, 6, 4, 2. */
static inline void fr32_quad(uint8_t *restrict out, const uint8_t *restrict in)
{
    memcpy(out, in, 31);
    out[31] = in[31] & 0x3f;
    for (int j = 0; j < 32; j++)
        out[32 + j] = (uint8_t)((in[31 + j] >> 6) | (in[32 + j] << 2));
    out[63] &= 0x3f;
    for (int j = 0; j < 32; j++)
        out[64 + j] = (uint8_t)((in[63 + j] >> 4) | (in[64 + j] << 4));
    out[95] &= 0x3f;
    for (int j = 0; j < 31; j++)
        out[96 + j] = (uint8_t)((in[95 + j] >> 2) | (in[96 + j] << 6));
    out[127] = (uint8_t)(in[126] >> 2);
}

typedef struct {
    uint64_t mask;                   /* bit i set: layers[i] holds a pending left node */
    uint8_t layers[MAX_LEVELS][32];
} Stack;

/* Adds a complete subtree root of `level`, merging with pending left siblings. */
static void stack_push(Stack *s, const uint8_t node[32], int level, pairs_fn pairs)
{
    uint8_t buf[64];
    memcpy(buf + 32, node, 32);
    while (s->mask & (1ULL << level)) {
        memcpy(buf, s->layers[level], 32);
        pairs(buf + 32, buf, 1);
        s->mask &= ~(1ULL << level);
        level++;
    }
    memcpy(s->layers[level], buf + 32, 32);
    s->mask |= 1ULL << level;
}

/* Expands and hashes whole units read straight from `in`. `work` holds UNIT_OUT bytes. */
static void process_units(Stack *s, uint8_t *work, const uint8_t *in, size_t nunits, pairs_fn pairs)
{
    for (size_t u = 0; u < nunits; u++) {
        const uint8_t *src = in + (size_t)u * UNIT_IN;
        for (int q = 0; q < UNIT_QUADS; q++)
            fr32_quad(work + q * QUAD_OUT, src + q * QUAD_IN);
        for (size_t n = UNIT_OUT / 64; n >= 1; n /= 2)
            pairs(work, work, n);
        stack_push(s, work, UNIT_LEVEL, pairs);
    }
}

/* Root of the tree: pending left nodes are closed with zero subtrees, lowest level first.
 * Returns the level of the root. */
static int stack_root(const Stack *s, uint8_t root[32], pairs_fn pairs)
{
    int low = 0, high = MAX_LEVELS - 1;
    while (!(s->mask & (1ULL << low)))
        low++;
    while (!(s->mask & (1ULL << high)))
        high--;
    uint8_t buf[64];
    if (low == high) {
        memcpy(root, s->layers[high], 32);
        return high;
    }
    memcpy(buf, s->layers[low], 32);
    memcpy(buf + 32, ZERO_NODE[low], 32);
    pairs(buf, buf, 1); /* carry now sits at level low + 1, in buf[0..32) */
    for (int lvl = low + 1; lvl <= high; lvl++) {
        if (s->mask & (1ULL << lvl)) {
            memcpy(buf + 32, buf, 32);
            memcpy(buf, s->layers[lvl], 32);
        } else {
            memcpy(buf + 32, ZERO_NODE[lvl], 32);
        }
        pairs(buf, buf, 1);
    }
    memcpy(root, buf, 32);
    return high + 1;
}

/* ------------------------------------------------------------------ Python type */

typedef struct {
    PyObject_HEAD
    unsigned long long total;
    size_t npending;
    int busy;
    pairs_fn pairs;
    Stack stack;
    uint8_t pending[UNIT_IN];
    uint8_t work[UNIT_OUT];
} CommPObject;

static int CommP_init(CommPObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"portable", NULL};
    int portable = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$p:CommP", kwlist, &portable))
        return -1;
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "CommP object is in use by another thread");
        return -1;
    }
    self->total = 0;
    self->npending = 0;
    self->busy = 0;
    self->stack.mask = 0;
    self->pairs = pairs_portable;
#if CP_HAVE_X86
    if (HAVE_SHANI && !portable)
        self->pairs = pairs_shani;
#endif
    return 0;
}

static int claim(CommPObject *self)
{
    if (self->busy) {
        PyErr_SetString(PyExc_RuntimeError, "CommP object is in use by another thread");
        return -1;
    }
    self->busy = 1;
    return 0;
}

static PyObject *CommP_update(CommPObject *self, PyObject *arg)
{
    Py_buffer view;
    if (PyObject_GetBuffer(arg, &view, PyBUF_SIMPLE) < 0)
        return NULL;
    if (claim(self) < 0) {
        PyBuffer_Release(&view);
        return NULL;
    }
    const uint8_t *p = view.buf;
    size_t len = (size_t)view.len;
    self->total += len;
    if (self->npending + len < UNIT_IN) {
        /* Small update: no hashing, not worth releasing the GIL. */
        memcpy(self->pending + self->npending, p, len);
        self->npending += len;
    } else {
        Py_BEGIN_ALLOW_THREADS
        if (self->npending) {
            size_t take = UNIT_IN - self->npending;
            memcpy(self->pending + self->npending, p, take);
            process_units(&self->stack, self->work, self->pending, 1, self->pairs);
            self->npending = 0;
            p += take;
            len -= take;
        }
        size_t whole = len / UNIT_IN;
        process_units(&self->stack, self->work, p, whole, self->pairs);
        p += whole * UNIT_IN;
        len -= whole * UNIT_IN;
        memcpy(self->pending, p, len);
        self->npending = len;
        Py_END_ALLOW_THREADS
    }
    self->busy = 0;
    PyBuffer_Release(&view);
    Py_RETURN_NONE;
}

static unsigned long long next_pow2_u64(unsigned long long x)
{
    unsigned long long p = 1;
    while (p < x)
        p <<= 1;
    return p;
}

static PyObject *CommP_digest(CommPObject *self, PyObject *Py_UNUSED(ignored))
{
    if (self->total < MIN_INPUT) {
        PyErr_Format(PyExc_ValueError, "commP needs at least %d bytes of input, got %llu",
                     MIN_INPUT, self->total);
        return NULL;
    }
    if (claim(self) < 0)
        return NULL;
    uint8_t root[32];
    int level;
    Py_BEGIN_ALLOW_THREADS
    /* Work on a copy of the stack so that the object can keep streaming afterwards. */
    Stack s = self->stack;
    size_t nquads = (self->npending + QUAD_IN - 1) / QUAD_IN;
    if (nquads) {
        uint8_t quad[QUAD_IN];
        for (size_t q = 0; q < nquads; q++) {
            size_t off = q * QUAD_IN, have = self->npending - off;
            const uint8_t *src = self->pending + off;
            if (have < QUAD_IN) { /* zero-pad the last quad */
                memset(quad, 0, QUAD_IN);
                memcpy(quad, src, have);
                src = quad;
            }
            fr32_quad(self->work + q * QUAD_OUT, src);
        }
        for (size_t leaf = 0; leaf < 4 * nquads; leaf++)
            stack_push(&s, self->work + 32 * leaf, 0, self->pairs);
    }
    level = stack_root(&s, root, self->pairs);
    Py_END_ALLOW_THREADS
    self->busy = 0;
    unsigned long long quads = (self->total + QUAD_IN - 1) / QUAD_IN;
    unsigned long long size = next_pow2_u64(quads * QUAD_OUT);
    if (size != (32ULL << level)) {
        PyErr_SetString(PyExc_AssertionError, "commP tree height does not match the piece size");
        return NULL;
    }
    return Py_BuildValue("(y#K)", (const char *)root, (Py_ssize_t)32, size);
}

static PyObject *CommP_get_total(CommPObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromUnsignedLongLong(self->total);
}

static PyObject *CommP_get_kernel(CommPObject *self, void *Py_UNUSED(closure))
{
    return PyUnicode_FromString(self->pairs == pairs_portable ? "portable" : "sha-ni");
}

static PyMethodDef CommP_methods[] = {
    {"update", (PyCFunction)CommP_update, METH_O,
     "update(data, /)\n--\n\nFeed bytes (any buffer). The GIL is released while hashing."},
    {"digest", (PyCFunction)CommP_digest, METH_NOARGS,
     "digest()\n--\n\nReturn (commitment: bytes, padded_piece_size: int). State is kept."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef CommP_getset[] = {
    {"total", (getter)CommP_get_total, NULL, "Bytes fed so far.", NULL},
    {"kernel", (getter)CommP_get_kernel, NULL, "'sha-ni' or 'portable'.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject CommPType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "dataprep._commp.CommP",
    .tp_doc = PyDoc_STR("CommP(*, portable=False)\n--\n\nStreaming commP (Fr32 + SHA-256-trunc254 tree)."),
    .tp_basicsize = sizeof(CommPObject),
    .tp_itemsize = 0,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)CommP_init,
    .tp_methods = CommP_methods,
    .tp_getset = CommP_getset,
};

static void init_tables(void)
{
    uint32_t w[64];
    memset(w, 0, sizeof w);
    w[0] = 0x80000000u;
    w[15] = 512; /* message length in bits */
    for (int i = 16; i < 64; i++)
        w[i] = G1(w[i - 2]) + w[i - 7] + G0(w[i - 15]) + w[i - 16];
    for (int i = 0; i < 64; i++)
        PAD_WK[i] = w[i] + K256[i];
    uint8_t buf[64];
    memset(ZERO_NODE[0], 0, 32);
    for (int l = 1; l < MAX_LEVELS; l++) {
        memcpy(buf, ZERO_NODE[l - 1], 32);
        memcpy(buf + 32, ZERO_NODE[l - 1], 32);
        node_portable(ZERO_NODE[l], buf);
    }
#if CP_HAVE_X86
    HAVE_SHANI = detect_shani();
#endif
}

static struct PyModuleDef commp_module = {
    PyModuleDef_HEAD_INIT, "dataprep._commp",
    "Native commP kernel (Fr32 + SHA-256-trunc254 binary tree), SHA-NI when available.",
    -1, NULL, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__commp(void)
{
    init_tables();
    if (PyType_Ready(&CommPType) < 0)
        return NULL;
    PyObject *m = PyModule_Create(&commp_module);
    if (m == NULL)
        return NULL;
    Py_INCREF(&CommPType);
    if (PyModule_AddObject(m, "CommP", (PyObject *)&CommPType) < 0 ||
        PyModule_AddIntConstant(m, "UNIT_BYTES", UNIT_IN) < 0 ||
        PyModule_AddObject(m, "HAVE_SHANI", PyBool_FromLong(HAVE_SHANI)) < 0) {
        Py_DECREF(&CommPType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
