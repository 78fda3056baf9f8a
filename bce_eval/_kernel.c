/* The excess (and the entropy of float targets) of one image pair, in one fused pass.

   bce_eval.kernels calls excess_sums() on a pair of contiguous arrays in their stored sample
   types. Each value's excess is computed as bce_eval.metrics.pixel_maps computes it,

       KL(y || p) = y g(p / y) + (1 - y) g((1 - p) / (1 - y)),   g(r) = r - 1 - log r >= 0,

   each term non-negative, so that nothing cancels between them. With t = r - 1 = d / y
   (d = p - y), g = t - log1p(t) is a series in t for |t| < SERIES_BELOW, where t - log r would
   cancel, and t - log(r) elsewhere, r formed as a ratio so that it keeps its relative precision
   when p is far below y. Every term is within about 1e-13 of the exact one, relative: a few
   ulp over most of the range, a few hundred just above |t| = SERIES_BELOW, where t - log r
   cancels most. The terms are non-negative, so their sum (in lanes, then across chunks with a
   compensated sum) keeps that relative precision.

   Values these forms do not cover are left to the caller ("special"): the torch convention's
   floored logs (p below 1e-40, or p = 1), logits beyond +-600 and float targets below 1e-300.
   A value out of range (a probability outside [0, 1], a non-finite logit, a NaN) stops the pass:
   the caller reports it.

   The loops are written without branches, in chunks, so that the compiler vectorises them;
   log and exp are our own for the same reason. On x86-64 each kernel is compiled for AVX-512,
   AVX2 + FMA and baseline x86-64, and the CPU picks one when the module loads (target_clones). */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && defined(__ELF__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CLONES
#endif
#if defined(_MSC_VER)
#define INLINE static __forceinline
#define restrict __restrict
#else
#define INLINE static inline __attribute__((always_inline))
#endif

#define CHUNK 256
#define SERIES_BELOW 0.1
#define TORCH_FLOORED_BELOW 1e-40
#define LOGIT_LIMIT 600.0
#define TINY_TARGET 1e-300
#define NEAR_HALF 1.0

typedef enum { KERAS = 0, TORCH = 1, LOGITS = 2 } mode_t_;

/* ---- bits ---------------------------------------------------------------------------------- */

INLINE uint64_t bits_of(double x) { uint64_t u; memcpy(&u, &x, sizeof u); return u; }
INLINE double double_of(uint64_t u) { double x; memcpy(&x, &u, sizeof x); return x; }

/* log(x) for a positive normal x, within 1 ulp: fdlibm's e_log.c without its branches. */
INLINE double log_normal(double x) {
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double Lg1 = 6.666666666666735130e-01, Lg2 = 3.999999999940941908e-01,
                 Lg3 = 2.857142874366239149e-01, Lg4 = 2.222219843214978396e-01,
                 Lg5 = 1.818357216161805012e-01, Lg6 = 1.531383769920937332e-01,
                 Lg7 = 1.479819860511658591e-01;
    uint64_t u = bits_of(x);
    uint64_t hx = u >> 32;
    uint64_t i = ((hx & 0x000fffff) + 0x95f64) & 0x100000; /* mantissa above sqrt(2): halve it */
    uint64_t k = (hx >> 20) + (i >> 20);                   /* biased exponent, + 1 if halved */
    double m = double_of((((hx & 0x000fffff) | (i ^ 0x3ff00000)) << 32) | (u & 0xffffffff));
    /* k - 1023 as a double without an int64 conversion (none in AVX2): 2^52 + k, less 2^52 + 1023. */
    double dk = double_of(0x4330000000000000ULL | k) - (4503599627370496.0 + 1023.0);
    double f = m - 1.0;
    double s = f / (2.0 + f);
    double z = s * s, w = z * z;
    double t1 = w * (Lg2 + w * (Lg4 + w * Lg6));
    double t2 = z * (Lg1 + w * (Lg3 + w * (Lg5 + w * Lg7)));
    double R = t2 + t1, hfsq = 0.5 * f * f;
    return dk * ln2_hi - ((hfsq - (s * (hfsq + R) + dk * ln2_lo)) - f);
}

/* log1p(x) for x > -1 with 1 + x normal: log(u) + (x - (u - 1)) / u, u = 1 + x rounded. */
INLINE double log1p_(double x) {
    double u = 1.0 + x;
    return log_normal(u) + (x - (u - 1.0)) / u;
}

/* e^z and e^z - 1 for -709 < z <= 0, each within about 1 ulp of itself: z = k log 2 + r with
   |r| <= log(2) / 2, e^r - 1 = r P(r) by a Taylor polynomial of degree 13, then e^z = 2^k (1 +
   r P) and e^z - 1 = (2^k - 1) + 2^k r P (exact at k = 0 and -1, where e^z - 1 is small or near
   -1/2). */
INLINE void exp_nonpositive(double z, double *e, double *em) {
    const double inv_ln2 = 1.44269504088896338700e+00;
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double shifter = 6755399441055744.0; /* 1.5 * 2^52: adding it rounds to an integer */
    double kd = z * inv_ln2 + shifter;
    uint64_t k = bits_of(kd); /* low bits: k as a two's complement integer */
    kd -= shifter;
    double r = (z - kd * ln2_hi) - kd * ln2_lo;
    double P = 1.0 / 87178291200.0;
    P = P * r + 1.0 / 6227020800.0;
    P = P * r + 1.0 / 479001600.0;
    P = P * r + 1.0 / 39916800.0;
    P = P * r + 1.0 / 3628800.0;
    P = P * r + 1.0 / 362880.0;
    P = P * r + 1.0 / 40320.0;
    P = P * r + 1.0 / 5040.0;
    P = P * r + 1.0 / 720.0;
    P = P * r + 1.0 / 120.0;
    P = P * r + 1.0 / 24.0;
    P = P * r + 1.0 / 6.0;
    P = P * r + 0.5;
    P = P * r + 1.0;
    double rp = r * P;
    double scale = double_of((k + 1023) << 52); /* 2^k, k >= -1022 */
    *e = scale + scale * rp;
    *em = (scale - 1.0) + scale * rp;
}

/* g(t) = t - log1p(t) >= 0 for |t| < SERIES_BELOW: t^2 (1/2 - t/3 + t^2/4 - ...), to t^18,
   whose remainder is below 1e-17 of the sum. */
INLINE double g_series(double t) {
    double s = 1.0 / 18;
    s = 1.0 / 17 - t * s;
    s = 1.0 / 16 - t * s;
    s = 1.0 / 15 - t * s;
    s = 1.0 / 14 - t * s;
    s = 1.0 / 13 - t * s;
    s = 1.0 / 12 - t * s;
    s = 1.0 / 11 - t * s;
    s = 1.0 / 10 - t * s;
    s = 1.0 / 9 - t * s;
    s = 1.0 / 8 - t * s;
    s = 1.0 / 7 - t * s;
    s = 1.0 / 6 - t * s;
    s = 1.0 / 5 - t * s;
    s = 1.0 / 4 - t * s;
    s = 1.0 / 3 - t * s;
    s = 0.5 - t * s;
    return t * t * s;
}

/* One term of the excess: w g(a / w) from d = a - w, with inv_w = 1 / w; w > 0. */
INLINE double kl_term(double w, double inv_w, double d, double a) {
    double t = d * inv_w;
    double r = a * inv_w;
    double direct = t - log_normal(r > 0 ? r : 1.0);
    double g = fabs(t) < SERIES_BELOW ? g_series(t) : direct;
    return w * g;
}

/* ---- the pass ------------------------------------------------------------------------------ */

typedef struct {
    const double *y, *p; /* k / 255 for 8-bit targets and predictions (LEVELS_8) */
    const double *h;     /* H at each level of an integer target */
    mode_t_ mode;
    double low, high; /* keras: the clip */
} Settings;

typedef struct {
    double excess, excess_c, entropy, entropy_c; /* Neumaier sums of the chunks' sums */
    int64_t clipped;
    int invalid;
    int64_t *special;
    Py_ssize_t special_n, special_cap;
} Totals;

INLINE void add(double *sum, double *c, double x) {
    double t = *sum + x;
    *c += fabs(*sum) >= fabs(x) ? (*sum - t) + x : (x - t) + *sum;
    *sum = t;
}

INLINE double lanes_sum(const double *v, int n) {
    double lane[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) lane[j] += v[i + j];
    for (; i < n; i++) lane[0] += v[i];
    return ((lane[0] + lane[4]) + (lane[1] + lane[5])) + ((lane[2] + lane[6]) + (lane[3] + lane[7]));
}

static int note_special(Totals *totals, Py_ssize_t index) {
    if (totals->special_n == totals->special_cap) {
        Py_ssize_t cap = totals->special_cap ? 2 * totals->special_cap : 256;
        int64_t *grown = PyMem_RawRealloc(totals->special, (size_t)cap * sizeof(int64_t));
        if (!grown) return -1;
        totals->special = grown;
        totals->special_cap = cap;
    }
    totals->special[totals->special_n++] = index;
    return 0;
}

/* The body of every kernel: T and P are the stored types, TARGET_INT and PRED_INT whether they
   are integer levels, MODE one of mode_t_; all constants, so each instance is specialised. */
#define KERNEL(NAME, T, P, TARGET_INT, PRED_INT, MODE)                                                        \
    static CLONES int NAME(const T *restrict target, const P *restrict pred, Py_ssize_t n,                    \
                           const Settings *s, Totals *totals) {                                               \
        double excess[CHUNK], entropy[CHUNK];                                                                 \
        unsigned char flag[CHUNK];                                                                            \
        for (Py_ssize_t start = 0; start < n; start += CHUNK) {                                               \
            int m = n - start < CHUNK ? (int)(n - start) : CHUNK;                                             \
            const T *tk = target + start;                                                                     \
            const P *pk = pred + start;                                                                       \
            int64_t clipped = 0;                                                                              \
            int bad = 0, special = 0;                                                                         \
            for (int i = 0; i < m; i++) {                                                                     \
                double y, inv_y, w, inv_w;                                                                    \
                int flagged = 0, wrong = 0;                                                                   \
                if (TARGET_INT) {                                                                             \
                    size_t k = (size_t)tk[i];                                                                 \
                    /* 8-bit levels from a table in L1, 16-bit ones divided (a table of 512 KB                \
                       misses the cache), both as NumPy rounds k / scale; 1 - y and the inverses              \
                       computed rather than gathered from more tables, which costs no more */                 \
                    y = sizeof(T) == 1 ? s->y[k] : (double)tk[i] / 65535.0;                                   \
                    w = 1.0 - y;                                                                              \
                    inv_y = 1.0 / (y > 0.0 ? y : 1.0), inv_w = 1.0 / (w > 0.0 ? w : 1.0);                     \
                    entropy[i] = s->h[k];                                                                     \
                } else {                                                                                      \
                    y = (double)tk[i];                                                                        \
                    wrong |= !((y >= 0.0) & (y <= 1.0));                                                      \
                    flagged |= (y > 0.0) & (y < TINY_TARGET);                                                 \
                    w = 1.0 - y;                                                                              \
                    double safe_y = (y >= TINY_TARGET) & (y <= 1.0) ? y : 0.5;                                \
                    double safe_w = (w > 0.0) & (w <= 1.0) ? w : 0.5;                                         \
                    inv_y = 1.0 / safe_y, inv_w = 1.0 / safe_w;                                               \
                    /* H = -[y log y + (1 - y) log1p(-y)], 0 log 0 = 0 */                                     \
                    double hy = y >= TINY_TARGET ? -y * log_normal(safe_y) : 0.0;                             \
                    double hw = (w > 0.0) & (y <= 1.0) ? -w * log1p_(y >= 0.0 ? -y : 0.0) : 0.0;              \
                    entropy[i] = hy + hw;                                                                     \
                }                                                                                             \
                double p, q, d;                                                                               \
                if (MODE == LOGITS) {                                                                         \
                    double x = (double)pk[i];                                                                 \
                    wrong |= !(fabs(x) <= 1.79769313486231570815e+308);                                       \
                    flagged |= !(fabs(x) <= LOGIT_LIMIT);                                                     \
                    double xs = fabs(x) <= LOGIT_LIMIT ? x : 0.0;                                             \
                    /* e = e^-|x|: p = a / (1 + e) and 1 - p = b / (1 + e) with one of a, b = e and           \
                       the other 1, each to full relative precision */                                        \
                    double e, em;                                                                             \
                    exp_nonpositive(-fabs(xs), &e, &em);                                                      \
                    double a = xs < 0.0 ? e : 1.0, b = xs < 0.0 ? 1.0 : e;                                    \
                    double inv = 1.0 / (1.0 + e);                                                             \
                    p = a * inv, q = b * inv;                                                                 \
                    d = (w * a - y * b) * inv;                                                                \
                    /* |x| < NEAR_HALF: p - 1/2 = tanh(x / 2) / 2 = -(e^-|x| - 1) / (2 (1 + e)) for           \
                       x > 0 keeps the low digits of x that p, near 1/2, lacks (as metrics.pixel_maps         \
                       computes it) */                                                                        \
                    double half_tanh = -0.5 * em * inv;                                                       \
                    double near_half = (0.5 - y) + (xs < 0.0 ? -half_tanh : half_tanh);                       \
                    d = fabs(xs) < NEAR_HALF ? near_half : d;                                                 \
                } else {                                                                                      \
                    double x = !PRED_INT       ? (double)pk[i]                                                \
                               : sizeof(P) == 1 ? s->p[(size_t)pk[i]]                                         \
                                                : (double)pk[i] / 65535.0;                                    \
                    if (!PRED_INT) wrong |= !((x >= 0.0) & (x <= 1.0));                                       \
                    if (MODE == KERAS) {                                                                      \
                        clipped += ((x < s->low) & (y > 0.0)) | ((x > s->high) & (y < 1.0));                  \
                        p = x < s->low ? s->low : (x > s->high ? s->high : x);                                \
                    } else {                                                                                  \
                        flagged |= (x < TORCH_FLOORED_BELOW) | (x >= 1.0);                                    \
                        p = (x < TORCH_FLOORED_BELOW) | (x >= 1.0) ? 0.5 : x;                                 \
                    }                                                                                         \
                    q = 1.0 - p;                                                                              \
                    d = p - y;                                                                                \
                }                                                                                             \
                /* y = 0: y g(p / y) tends to p = d; 1 - y = 0: (1 - y) g(q / (1 - y)) to q = -d */           \
                double lower = kl_term(y, inv_y, d, p);                                                       \
                double upper = kl_term(w, inv_w, -d, q);                                                      \
                double e = (y > 0.0 ? lower : d) + (w > 0.0 ? upper : -d);                                    \
                excess[i] = flagged | wrong ? 0.0 : e;                                                        \
                entropy[i] = flagged | wrong ? 0.0 : entropy[i];                                              \
                flag[i] = (unsigned char)flagged;                                                             \
                special |= flagged;                                                                           \
                bad |= wrong;                                                                                 \
            }                                                                                                 \
            if (bad) {                                                                                        \
                totals->invalid = 1;                                                                          \
                return 0;                                                                                     \
            }                                                                                                 \
            if (special)                                                                                      \
                for (int i = 0; i < m; i++)                                                                   \
                    if (flag[i] && note_special(totals, start + i) < 0) return -1;                            \
            add(&totals->excess, &totals->excess_c, lanes_sum(excess, m));                                    \
            add(&totals->entropy, &totals->entropy_c, lanes_sum(entropy, m));                                 \
            totals->clipped += clipped;                                                                       \
        }                                                                                                     \
        return 0;                                                                                             \
    }

#define MODES(NAME, T, P, TI, PI)                                                                             \
    KERNEL(NAME##_keras, T, P, TI, PI, KERAS)                                                                 \
    KERNEL(NAME##_torch, T, P, TI, PI, TORCH)

/* Targets: uint8, uint16, float32, float64; predictions: the same, or float logits. */
#define TARGET(NAME, T, TI)                                                                                   \
    MODES(NAME##_u8, T, uint8_t, TI, 1)                                                                       \
    MODES(NAME##_u16, T, uint16_t, TI, 1)                                                                     \
    MODES(NAME##_f32, T, float, TI, 0)                                                                        \
    MODES(NAME##_f64, T, double, TI, 0)                                                                       \
    KERNEL(NAME##_f32_logits, T, float, TI, 0, LOGITS)                                                        \
    KERNEL(NAME##_f64_logits, T, double, TI, 0, LOGITS)

TARGET(k_u8, uint8_t, 1)
TARGET(k_u16, uint16_t, 1)
TARGET(k_f32, float, 0)
TARGET(k_f64, double, 0)

typedef int (*kernel_fn)(const void *, const void *, Py_ssize_t, const Settings *, Totals *);

#define ROW(NAME)                                                                                   \
    {(kernel_fn)NAME##_u8_keras, (kernel_fn)NAME##_u8_torch, NULL},                                           \
    {(kernel_fn)NAME##_u16_keras, (kernel_fn)NAME##_u16_torch, NULL},                                         \
    {(kernel_fn)NAME##_f32_keras, (kernel_fn)NAME##_f32_torch, (kernel_fn)NAME##_f32_logits},                 \
    {(kernel_fn)NAME##_f64_keras, (kernel_fn)NAME##_f64_torch, (kernel_fn)NAME##_f64_logits}

/* [target kind][pred kind][mode], kinds in the order uint8, uint16, float32, float64. */
static const kernel_fn KERNELS[4][4][3] = {{ROW(k_u8)}, {ROW(k_u16)}, {ROW(k_f32)}, {ROW(k_f64)}};

/* ---- level tables -------------------------------------------------------------------------- */

/* k / 255 for every byte k, as NumPy computes it (one correctly rounded division). */
static double LEVELS_8[256];

static void build_levels(void) {
    for (int k = 0; k < 256; k++) LEVELS_8[k] = (double)k / 255.0;
}

static int kind_of(const Py_buffer *view) {
    const char *f = view->format ? view->format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (f[0] && f[1]) return -1;
    switch (f[0]) {
    case 'B': return view->itemsize == 1 ? 0 : -1;
    case 'H': return view->itemsize == 2 ? 1 : -1;
    case 'f': return view->itemsize == 4 ? 2 : -1;
    case 'd': return view->itemsize == 8 ? 3 : -1;
    default: return -1;
    }
}


PyDoc_STRVAR(excess_sums_doc,
"excess_sums(target, pred, mode, low, high, entropy) -> (excess, entropy, clipped, invalid, special)\n\n"
"target, pred: C-contiguous buffers of the same length, of uint8, uint16, float32 or float64;\n"
"mode: 0 keras (pred clipped to [low, high]), 1 torch, 2 logits (pred float); entropy: for an\n"
"integer target, H at each of its levels (float64, 256 or 65,536 values), else None. Returns\n"
"the excess and entropy sums over every value but the special ones; keras' clipped count;\n"
"invalid, True if a value is out of range (the sums are then meaningless); and the indices of\n"
"the special values, left to the caller, as bytes of int64.");

static PyObject *excess_sums(PyObject *self, PyObject *args) {
    (void)self;
    PyObject *target_obj, *pred_obj, *entropy_obj;
    int mode;
    double low, high;
    if (!PyArg_ParseTuple(args, "OOiddO:excess_sums", &target_obj, &pred_obj, &mode, &low, &high, &entropy_obj))
        return NULL;
    if (mode < 0 || mode > 2) return PyErr_Format(PyExc_ValueError, "mode must be 0, 1 or 2, not %d", mode);
    Py_buffer target, pred, entropy = {0};
    int have_entropy = entropy_obj != Py_None;
    if (PyObject_GetBuffer(target_obj, &target, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(pred_obj, &pred, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&target);
        return NULL;
    }
    if (have_entropy && PyObject_GetBuffer(entropy_obj, &entropy, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&target);
        PyBuffer_Release(&pred);
        return NULL;
    }
    PyObject *result = NULL;
    int target_kind = kind_of(&target), pred_kind = kind_of(&pred);
    Py_ssize_t n = target.itemsize > 0 ? target.len / target.itemsize : 0;
    kernel_fn kernel = NULL;
    if (target_kind < 0 || pred_kind < 0) {
        PyErr_SetString(PyExc_TypeError, "samples must be uint8, uint16, float32 or float64");
    } else if (pred.len / pred.itemsize != n) {
        PyErr_SetString(PyExc_ValueError, "target and pred differ in length");
    } else if (!(kernel = KERNELS[target_kind][pred_kind][mode])) {
        PyErr_SetString(PyExc_TypeError, "logits must be float32 or float64");
    } else {
        Settings settings = {0};
        settings.mode = (mode_t_)mode;
        settings.low = low, settings.high = high;
        if (target_kind < 2) {
            Py_ssize_t count = target_kind == 0 ? 256 : 65536;
            if (!have_entropy || kind_of(&entropy) != 3 || entropy.len != count * (Py_ssize_t)sizeof(double)) {
                PyErr_Format(PyExc_ValueError, "an integer target needs its %zd levels' entropy as float64", count);
                goto done;
            }
            settings.h = entropy.buf;
        }
        settings.y = settings.p = LEVELS_8;
        Totals totals = {0};
        int status;
        Py_BEGIN_ALLOW_THREADS
        status = kernel(target.buf, pred.buf, n, &settings, &totals);
        Py_END_ALLOW_THREADS
        if (status < 0) {
            PyErr_NoMemory();
        } else {
            PyObject *special = PyBytes_FromStringAndSize(
                (const char *)totals.special, totals.special_n * (Py_ssize_t)sizeof(int64_t));
            if (special)
                result = Py_BuildValue("ddLON", totals.excess + totals.excess_c, totals.entropy + totals.entropy_c,
                                       (long long)totals.clipped, totals.invalid ? Py_True : Py_False, special);
        }
        PyMem_RawFree(totals.special);
    }
done:
    PyBuffer_Release(&target);
    PyBuffer_Release(&pred);
    if (have_entropy) PyBuffer_Release(&entropy);
    return result;
}

static PyMethodDef methods[] = {
    {"excess_sums", excess_sums, METH_VARARGS, excess_sums_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "bce_eval._kernel",
    "The fused excess kernel of bce_eval.kernels (see _kernel.c).", -1, methods,
};

PyMODINIT_FUNC PyInit__kernel(void) {
    build_levels();
    return PyModule_Create(&module);
}
