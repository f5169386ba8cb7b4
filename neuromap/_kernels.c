/* neuromap's hot loops: minimizer sketch, seeding, windows, ungapped screen, banded DP, traceback,
 * and the SAM text of a batch.
 *
 * Plain C called through ctypes (neuromap/kernels.py), which releases Python's GIL around every
 * call, so worker threads run these in parallel. Every array is C-contiguous and of the type the
 * Python wrapper checks; sizes are int64_t. Each function up to the SAM text is a line-for-line
 * translation of the numba kernel it replaced and is checked, bit for bit, against the numpy
 * originals in tests/reference_*.py (tests/test_kernels.py); the SAM text is checked against
 * the Python formatter it replaced, kept in tests/reference_sam.py. nm_settled, which came
 * later, has no original: the tests check it against the DP, whose result it predicts.
 *
 * A tiny module init makes the file an importable extension, so setuptools builds it and
 * importlib finds it; the functions themselves are reached through ctypes. Built with
 * -DNEUROMAP_NO_PYTHON it needs no Python headers (a plain shared library that ctypes loads just
 * the same, for a machine that cannot build the extension: benchmarks/gpu_lease.sh).
 */
#ifndef NEUROMAP_NO_PYTHON
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#endif
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))
/* Clones of the SIMD loops (the DP row, the k-mer hashes), the one for this CPU picked when the
 * library loads (ifunc), where the toolchain can: x86-64 Linux with GCC or clang. Elsewhere
 * (aarch64, macOS) the portable build alone. An AVX-512 clone (arch=x86-64-v4: 16 int32 lanes
 * instead of AVX2's 8) where the compiler can dispatch to it (GCC 12 on): on the GPU machine's
 * Xeon it made whole runs 4-10 % faster over 4M reads and 1-12 % over 1M pairs, the same SAM
 * (benchmarks/README.md, tenth lease).
 * -DNEUROMAP_NO_AVX512 leaves it out (the AVX2 and portable clones only). */
#if defined(__x86_64__) && defined(__linux__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#if !defined(NEUROMAP_NO_AVX512) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
#define DP_CLONES __attribute__((target_clones("arch=x86-64-v4", "avx2", "default")))
#else
#define DP_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#endif
#ifndef DP_CLONES
#define DP_CLONES
#endif
#define INVALID_HASH UINT64_MAX
#define NEG (-(1 << 22)) /* 'impossible'; (NEG + x) * 64 fits int32 (align.py) */

static inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static inline int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
static inline int32_t max32(int32_t a, int32_t b) { return a > b ? a : b; }

/* ---------------------------------------------------------------------------------- sketch */

/* minimap2's invertible integer hash on 2k bits (uint64 arithmetic wraps). */
static inline uint64_t hash64(uint64_t key, uint64_t mask) {
    key = (~key + (key << 21)) & mask;
    key = key ^ (key >> 24);
    key = ((key + (key << 3)) + (key << 8)) & mask;
    key = key ^ (key >> 14);
    key = ((key + (key << 2)) + (key << 4)) & mask;
    key = key ^ (key >> 28);
    key = (key + (key << 31)) & mask;
    return key;
}

/* The hashes of `n` canonical k-mer codes (a loop of its own, so that it vectorises). */
DP_CLONES
static void hash_codes(const uint64_t *restrict key, const uint8_t *restrict bad, int64_t n, uint64_t mask, uint64_t *restrict h) {
    for (int64_t m = 0; m < n; m++) {
        const uint64_t v = hash64(key[m], mask);
        h[m] = bad[m] ? INVALID_HASH : v;
    }
}

/* Rolling 2-bit codes of each row's k-mers, forward and reverse complement, hashed.
 * codes (rows, length); hashes, is_reverse (rows, length - k + 1). */
EXPORT int nm_hash_rows(const uint8_t *codes, int64_t rows, int64_t length, int64_t k, uint64_t *hashes, uint8_t *is_reverse) {
    const uint64_t mask = (k >= 32) ? UINT64_MAX : (((uint64_t)1 << (2 * k)) - 1);
    const uint64_t top = (uint64_t)(2 * (k - 1));
    const int64_t n_kmers = length - k + 1;
    uint64_t *key = malloc(sizeof(uint64_t) * (n_kmers > 0 ? n_kmers : 1));
    uint8_t *bad = malloc(n_kmers > 0 ? n_kmers : 1);
    if (!key || !bad) {
        free(key), free(bad);
        return -1;
    }
    for (int64_t r = 0; r < rows; r++) {
        const uint8_t *row = codes + r * length;
        uint8_t *rev_out = is_reverse + r * n_kmers;
        uint64_t fwd = 0, rev = 0;
        int64_t last_bad = -1;
        for (int64_t j = 0; j < length; j++) {
            uint8_t c = row[j];
            if (c >= 4) last_bad = j;
            uint64_t base = c < 3 ? c : 3;
            fwd = ((fwd << 2) | base) & mask;
            rev = (rev >> 2) | ((3 - base) << top);
            int64_t m = j - k + 1;
            if (m >= 0) {
                rev_out[m] = rev < fwd;
                key[m] = rev < fwd ? rev : fwd;
                bad[m] = last_bad >= m;
            }
        }
        hash_codes(key, bad, n_kmers, mask, hashes + r * n_kmers);
    }
    free(key), free(bad);
    return 0;
}

/* Within each block of `width` values: forward[j] the extreme of the block's values up to j,
 * backward[j] from j to the block's end (van Herk / Gil-Werman). */
static void running_extremes(const uint64_t *values, int64_t n, int64_t width, int take_max, uint64_t *forward, uint64_t *backward) {
    for (int64_t start = 0; start < n; start += width) {
        int64_t stop = min64(start + width, n);
        forward[start] = values[start];
        for (int64_t j = start + 1; j < stop; j++) {
            uint64_t a = forward[j - 1], b = values[j];
            forward[j] = take_max ? (a > b ? a : b) : (a < b ? a : b);
        }
        backward[stop - 1] = values[stop - 1];
        for (int64_t j = stop - 2; j >= start; j--) {
            uint64_t a = backward[j + 1], b = values[j];
            backward[j] = take_max ? (a > b ? a : b) : (a < b ? a : b);
        }
    }
}

/* The selected k-mers of (rows, n_kmers) arrays in row-major order, as flat arrays: their row,
 * position, hash and strand (sketch_rows; numpy's flatnonzero, divmod and indexing gave the same).
 * The mask is read eight bytes at a time, each 0/1 byte folded into one bit, and only the set
 * bits are visited. Returns how many were written (as many as `selected` has set). */
EXPORT int64_t nm_compact(const uint8_t *selected, int64_t rows, int64_t n_kmers, const uint64_t *hashes, const uint8_t *is_reverse,
                          int64_t *row, int64_t *pos, uint64_t *hash_out, uint8_t *reverse_out) {
    int64_t n = 0;
    for (int64_t r = 0; r < rows; r++) {
        const int64_t base = r * n_kmers;
        int64_t m = 0;
#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__  /* (the bit trick reads bytes in memory order) */
        for (; m + 8 <= n_kmers; m += 8) {
            uint64_t word;
            memcpy(&word, selected + base + m, 8);
            /* bytes are 0 or 1: bit i of `bits` is byte i's */
            unsigned bits = (unsigned)(((word & 0x0101010101010101ULL) * 0x0102040810204080ULL) >> 56);
            while (bits) {
                const int64_t at = m + __builtin_ctz(bits);
                row[n] = r, pos[n] = at, hash_out[n] = hashes[base + at], reverse_out[n] = is_reverse[base + at];
                n++;
                bits &= bits - 1;
            }
        }
#endif
        for (; m < n_kmers; m++) {
            if (!selected[base + m]) continue;
            row[n] = r, pos[n] = m, hash_out[n] = hashes[base + m], reverse_out[n] = is_reverse[base + m];
            n++;
        }
    }
    return n;
}

/* selected[r, m]: k-mer m is the smallest of some window of w consecutive k-mers (sketch.py). */
EXPORT int nm_select(const uint64_t *hashes, int64_t rows, int64_t n_kmers, int64_t w, uint8_t *selected) {
    const int64_t width = min64(w, n_kmers);
    const int64_t n_windows = n_kmers - width + 1;
    const int64_t n_padded = n_windows + 2 * (width - 1);
    uint64_t *forward = malloc(sizeof(uint64_t) * (n_kmers + 2 * width));
    uint64_t *backward = malloc(sizeof(uint64_t) * (n_kmers + 2 * width));
    uint64_t *padded = calloc(n_padded, sizeof(uint64_t)); /* zeros each side never win a maximum */
    if (!forward || !backward || !padded) {
        free(forward), free(backward), free(padded);
        return -1;
    }
    for (int64_t r = 0; r < rows; r++) {
        const uint64_t *h = hashes + r * n_kmers;
        uint8_t *sel = selected + r * n_kmers;
        running_extremes(h, n_kmers, width, 0, forward, backward);
        for (int64_t t = 0; t < n_windows; t++) {
            uint64_t a = backward[t], b = forward[t + width - 1];
            padded[width - 1 + t] = a < b ? a : b;
        }
        running_extremes(padded, n_padded, width, 1, forward, backward);
        for (int64_t m = 0; m < n_kmers; m++) {
            uint64_t a = backward[m], b = forward[m + width - 1];
            sel[m] = ((a > b ? a : b) == h[m]) & (h[m] != INVALID_HASH);
        }
    }
    free(forward), free(backward), free(padded);
    return 0;
}

/* ------------------------------------------------------------------------------------ seed */

/* Ascending sort of int64 keys: insertion sort for short runs, quicksort (median of three)
 * above, heapsort if the recursion gets deep. Equal keys are indistinguishable, so any correct
 * sort gives the same array. */
static void insertion_sort(int64_t *a, int64_t n) {
    for (int64_t i = 1; i < n; i++) {
        int64_t v = a[i], j = i - 1;
        while (j >= 0 && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
}

static void sift_down(int64_t *a, int64_t start, int64_t n) {
    int64_t root = start;
    for (;;) {
        int64_t child = 2 * root + 1;
        if (child >= n) return;
        if (child + 1 < n && a[child] < a[child + 1]) child++;
        if (a[root] >= a[child]) return;
        int64_t t = a[root]; a[root] = a[child]; a[child] = t;
        root = child;
    }
}

static void heap_sort(int64_t *a, int64_t n) {
    for (int64_t i = n / 2 - 1; i >= 0; i--) sift_down(a, i, n);
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t t = a[0]; a[0] = a[i]; a[i] = t;
        sift_down(a, 0, i);
    }
}

static void sort_keys_depth(int64_t *a, int64_t n, int depth) {
    while (n > 24) {
        if (depth-- == 0) {
            heap_sort(a, n);
            return;
        }
        int64_t x = a[0], y = a[n / 2], z = a[n - 1];
        int64_t pivot = x < y ? (y < z ? y : (x < z ? z : x)) : (x < z ? x : (y < z ? z : y));
        int64_t i = 0, j = n - 1;
        for (;;) {
            while (a[i] < pivot) i++;
            while (a[j] > pivot) j--;
            if (i >= j) break;
            int64_t t = a[i]; a[i] = a[j]; a[j] = t;
            i++, j--;
        }
        /* [0, j] <= pivot <= [j + 1, n): recurse on the smaller side */
        if (j + 1 < n - j - 1) {
            sort_keys_depth(a, j + 1, depth);
            a += j + 1;
            n -= j + 1;
        } else {
            sort_keys_depth(a + j + 1, n - j - 1, depth);
            n = j + 1;
        }
    }
    insertion_sort(a, n);
}

static void sort_keys(int64_t *a, int64_t n) { sort_keys_depth(a, n, 128); }

/* Candidate placements of each read from its minimizers (seed.py's find_candidates; the numpy
 * original is tests/reference_seed.py). Minimizers come row by row: row, pos, hashes, read_rev
 * (n_mm). The table: mm_hash sorted, bucket_offsets (uint32 when offsets_u32, else int64),
 * mm_pos (uint32 when pos_u32, else int64), mm_reverse. Outputs (n_reads, n_keep): valid,
 * diagonal, reverse, support; n_clusters (n_reads). */
EXPORT int nm_seed(const int64_t *row, const int64_t *pos, const uint64_t *hashes, const uint8_t *read_rev, int64_t n_mm,
            const int64_t *lengths, int64_t k, const uint64_t *mm_hash, int64_t n_table, const void *bucket_offsets,
            int64_t offsets_u32, int64_t bucket_shift, const void *mm_pos, int64_t pos_u32, const uint8_t *mm_reverse,
            int64_t max_occ, int64_t max_diag_gap, int64_t max_span, int64_t pos_bits, int64_t diag_bits, int64_t diag_offset,
            int64_t n_keep, uint8_t *valid, int64_t *diagonal, uint8_t *reverse, int32_t *support, int32_t *n_clusters) {
    const uint32_t *off32 = bucket_offsets;
    const int64_t *off64 = bucket_offsets;
    const uint32_t *pos32 = mm_pos;
    const int64_t *pos64 = mm_pos;
    /* Every minimizer looked up once: its first occurrence in the table and how many there are. */
    int64_t *lo = malloc(sizeof(int64_t) * (n_mm ? n_mm : 1));
    int64_t *cnt = calloc(n_mm ? n_mm : 1, sizeof(int64_t));
    if (!lo || !cnt) {
        free(lo), free(cnt);
        return -1;
    }
    /* The lookups are independent loads from tables larger than the caches: each is asked for
     * (prefetched) some minimizers ahead of its use, its bucket's offsets first, then the bucket. */
    const int64_t ahead = 8;
    for (int64_t z = 0; z < n_mm + ahead; z++) {
        if (z < n_mm) {
            uint64_t bucket = hashes[z] >> bucket_shift;
            __builtin_prefetch(offsets_u32 ? (const void *)(off32 + bucket) : (const void *)(off64 + bucket));
        }
        if (z >= ahead) {
            uint64_t bucket = hashes[z - ahead] >> bucket_shift;
            lo[z - ahead] = offsets_u32 ? (int64_t)off32[bucket] : off64[bucket];
            /* The bucket's end, read now from the same line: kept in cnt until the next pass. */
            cnt[z - ahead] = offsets_u32 ? (int64_t)off32[bucket + 1] : off64[bucket + 1];
        }
    }
    int64_t max_hits = 0;
    for (int64_t a = 0; a < n_mm;) {
        int64_t z = a, total = 0;
        while (z < n_mm && row[z] == row[a]) {
            if (z + ahead < n_mm) __builtin_prefetch(mm_hash + lo[z + ahead]);
            int64_t first = lo[z];
            int64_t end = cnt[z];
            while (first < end && mm_hash[first] < hashes[z]) first++;
            int64_t c = 0;
            while (first + c < n_table && mm_hash[first + c] == hashes[z] && c <= max_occ) c++;
            lo[z] = first;
            cnt[z] = c <= max_occ ? c : 0; /* too frequent: ignored */
            total += cnt[z];
            z++;
        }
        max_hits = max64(max_hits, total);
        a = z;
    }
    /* A hit is one int64 key: strand | diagonal + offset | read position, so one sort orders the
     * hits by strand, then diagonal, then read position. */
    const int64_t pos_mask = ((int64_t)1 << pos_bits) - 1;
    const int64_t diag_mask = ((int64_t)1 << diag_bits) - 1;
    const int64_t top_support = pos_mask + 1;
    int64_t *keys = malloc(sizeof(int64_t) * (max_hits ? max_hits : 1));
    int64_t *rank_keys = malloc(sizeof(int64_t) * (max_hits ? max_hits : 1));
    int64_t *seen = calloc(pos_mask + 1, sizeof(int64_t)); /* last cluster (from 1) that counted a position */
    if (!keys || !rank_keys || !seen) {
        free(lo), free(cnt), free(keys), free(rank_keys), free(seen);
        return -1;
    }
    int64_t stamp = 0;
    for (int64_t a = 0; a < n_mm;) {
        int64_t r = row[a], z = a;
        while (z < n_mm && row[z] == r) z++;
        int64_t total = 0;
        for (int64_t m = a; m < z; m++) {
            if (m + ahead < n_mm && cnt[m + ahead]) {
                const int64_t j = lo[m + ahead];
                __builtin_prefetch(pos_u32 ? (const void *)(pos32 + j) : (const void *)(pos64 + j));
                __builtin_prefetch(mm_reverse + j);
            }
            int64_t strand = read_rev[m] != 0;
            for (int64_t j = lo[m]; j < lo[m] + cnt[m]; j++) {
                int64_t s = strand ^ (mm_reverse[j] != 0);
                int64_t oriented = s ? lengths[r] - k - pos[m] : pos[m];
                int64_t ref = pos_u32 ? (int64_t)pos32[j] : pos64[j];
                int64_t d = ref - oriented + diag_offset;
                keys[total++] = (((s << diag_bits) | d) << pos_bits) | pos[m];
            }
        }
        if (total == 0) {
            a = z;
            continue;
        }
        int64_t *hits = keys;
        sort_keys(hits, total);
        /* Clusters: a new one at a strand change or a diagonal gap; a chain wider than max_span
         * (a tandem repeat) is cut into pieces so each shift competes as its own placement. */
        int64_t n_cl = 0, chain_start = 0;
        for (int64_t t = 0; t < total;) {
            int64_t u = t;
            int64_t strand = hits[t] >> (pos_bits + diag_bits);
            int64_t d0 = (hits[t] >> pos_bits) & diag_mask;
            if (t == 0 || strand != hits[t - 1] >> (pos_bits + diag_bits) || d0 - ((hits[t - 1] >> pos_bits) & diag_mask) > max_diag_gap)
                chain_start = d0;
            int64_t piece = (d0 - chain_start) / max_span; /* both >= 0: floor division */
            stamp++;
            int64_t distinct = 0;
            while (u < total) {
                int64_t du = (hits[u] >> pos_bits) & diag_mask;
                if (u > t) {
                    if (hits[u] >> (pos_bits + diag_bits) != strand) break;
                    if (du - ((hits[u - 1] >> pos_bits) & diag_mask) > max_diag_gap) break;
                    if ((du - chain_start) / max_span != piece) break;
                }
                int64_t p = hits[u] & pos_mask;
                if (seen[p] != stamp) { /* support counts distinct read positions */
                    seen[p] = stamp;
                    distinct++;
                }
                u++;
            }
            int64_t median = (hits[t + (u - t) / 2] >> pos_bits) & diag_mask;
            /* Rank: more support first, then leftmost, then forward (deterministic). */
            rank_keys[n_cl++] = ((((top_support - distinct) << diag_bits) | median) << 1) | strand;
            t = u;
        }
        sort_keys(rank_keys, n_cl);
        for (int64_t j = 0; j < min64(n_cl, n_keep); j++) {
            int64_t key = rank_keys[j];
            valid[r * n_keep + j] = 1;
            diagonal[r * n_keep + j] = ((key >> 1) & diag_mask) - diag_offset;
            reverse[r * n_keep + j] = (key & 1) == 1;
            support[r * n_keep + j] = (int32_t)(top_support - (key >> (diag_bits + 1)));
        }
        n_clusters[r] = (int32_t)n_cl;
        a = z;
    }
    free(lo), free(cnt), free(keys), free(rank_keys), free(seen);
    return 0;
}

/* --------------------------------------------------------------------------------- windows */

/* out[i] = read `read[i]` of codes (n, width), reverse-complemented (its first `length` codes,
 * the rest N) where reverse[i]. */
EXPORT void nm_orient(const uint8_t *codes, int64_t width, const int64_t *lengths, const int64_t *read, const uint8_t *reverse,
               int64_t n_pairs, const uint8_t *complement, uint8_t *out) {
    for (int64_t i = 0; i < n_pairs; i++) {
        const uint8_t *src = codes + read[i] * width;
        uint8_t *dst = out + i * width;
        if (reverse[i]) {
            int64_t n = min64(lengths[read[i]], width);
            for (int64_t j = 0; j < n; j++) dst[j] = complement[src[n - 1 - j]];
            for (int64_t j = n; j < width; j++) dst[j] = 4;
        } else {
            memcpy(dst, src, width);
        }
    }
}

/* out[i, j] = seq[start[i] + j] inside [lo[i], hi[i]), else pad. */
EXPORT void nm_gather(const uint8_t *seq, const int64_t *start, const int64_t *lo, const int64_t *hi, int64_t n_pairs, int64_t width,
               int64_t pad, uint8_t *out) {
    for (int64_t i = 0; i < n_pairs; i++) {
        uint8_t *dst = out + i * width;
        for (int64_t j = 0; j < width; j++) {
            int64_t pos = start[i] + j;
            dst[j] = (lo[i] <= pos && pos < hi[i]) ? seq[pos] : (uint8_t)pad;
        }
    }
}

/* ----------------------------------------------------------------------------------- align */

/* Per pair, along the diagonal `margin`: summed substitution scores (table 6x6 int32), the
 * mismatches between A/C/G/T bases, and whether any read base lies off the contig. */
EXPORT void nm_ungapped(const uint8_t *query, int64_t n_pairs, int64_t q_width, const int64_t *qlen, const uint8_t *target, int64_t t_width,
                 int64_t margin, const int32_t *table, int64_t pad_code, int64_t *score, int64_t *mism, uint8_t *off) {
    const int64_t width = min64(q_width, t_width - margin);
    for (int64_t p = 0; p < n_pairs; p++) {
        const uint8_t *q = query + p * q_width, *t = target + p * t_width + margin;
        int64_t total = 0, mismatches = 0;
        int outside = 0;
        const int64_t n = min64(qlen[p], width);
        for (int64_t j = 0; j < n; j++) {
            uint8_t x = q[j], y = t[j];
            total += table[x * 6 + y];
            mismatches += (x < 4) & (y < 4) & (x != y);
            outside |= y == pad_code;
        }
        score[p] = total, mism[p] = mismatches, off[p] = (uint8_t)outside;
    }
}

/* Which pairs whose diagonal (slot `margin`) holds exactly two mismatches no other path in the
 * band can match or beat (align.py's `ungapped` has the derivation): on no other diagonal do at
 * most `max_other` mismatches fall, nor only within `clip_other` bases of one end; the two are not
 * both within `clip_own` bases of one end; and no two diagonals joined by one deletion of up to
 * `max_del` or one insertion of up to `max_ins` bases hold the read without a mismatch. A base
 * against N or padding counts as a match here (in the other paths' favour). Only pairs with
 * check[p] are looked at; settled[p] = 1 where the ungapped path is the only best one. */
EXPORT void nm_settled(const uint8_t *query, int64_t n_pairs, int64_t q_width, const int64_t *qlen, const uint8_t *target, int64_t t_width,
                       int64_t margin, int64_t max_other, int64_t clip_other, int64_t clip_own, int64_t max_del, int64_t max_ins,
                       const uint8_t *check, uint8_t *settled) {
    const int64_t band = 2 * margin + 1;
    int64_t first[64], last[64];
    for (int64_t p = 0; p < n_pairs; p++) {
        settled[p] = 0;
        if (!check[p] || band > 64) continue;
        const uint8_t *q = query + p * q_width, *t = target + p * t_width;
        const int64_t n = qlen[p];
        if (n > q_width || n + band - 1 > t_width || n < 1) continue;
        int ok = 1;
        for (int64_t b = 0; b < band && ok; b++) {
            int64_t count = 0, f = n, l = -1;
            for (int64_t j = 0; j < n; j++) {  /* from the left: the first mismatch, and whether there are more than max_other */
                uint8_t x = q[j], y = t[j + b];
                if (x < 4 && y < 4 && x != y) {
                    if (f == n) f = j;
                    if (++count > max_other && b != margin) break;
                }
            }
            for (int64_t j = n - 1; j >= 0; j--) {  /* from the right: the last one */
                uint8_t x = q[j], y = t[j + b];
                if (x < 4 && y < 4 && x != y) { l = j; break; }
            }
            first[b] = f, last[b] = l;
            if (b == margin) {
                if (count != 2 || n - f <= clip_own || l < clip_own) ok = 0;
            } else if (count <= max_other || f >= n - clip_other || l < clip_other) {
                ok = 0;
            }
        }
        for (int64_t b1 = 0; b1 < band && ok; b1++) {
            for (int64_t g = 1; g <= max_del && ok; g++)  /* read [0, x) on b1, a deletion, [x, n) on b1 + g */
                if (b1 + g < band && last[b1 + g] + 1 <= first[b1]) ok = 0;
            for (int64_t g = 1; g <= max_ins && ok; g++)  /* read [0, x) on b1, [x, x + g) inserted, the rest on b1 - g */
                if (b1 - g >= 0 && last[b1 - g] - g + 1 <= first[b1]) ok = 0;
        }
        settled[p] = (uint8_t)ok;
    }
}

/* Write value >= 0 in decimal at buf[at:]; returns the position after it. */
static inline int64_t put_int(uint8_t *buf, int64_t at, int64_t value) {
    int64_t digits = 1;
    for (int64_t v = value; v >= 10; v /= 10) digits++;
    for (int64_t j = digits - 1; j >= 0; j--) {
        buf[at + j] = (uint8_t)('0' + value % 10);
        value /= 10;
    }
    return at + digits;
}

/* MD and NM of ungapped alignments on the diagonal `margin`; md (n, md_width). */
EXPORT void nm_ungapped_md(const uint8_t *query, int64_t n_pairs, int64_t q_width, const int64_t *qlen, const uint8_t *target, int64_t t_width,
                    int64_t margin, const uint8_t *letters, uint8_t *md, int64_t md_width, int64_t *md_len, int32_t *nm) {
    for (int64_t p = 0; p < n_pairs; p++) {
        const uint8_t *q = query + p * q_width, *t = target + p * t_width + margin;
        uint8_t *out = md + p * md_width;
        int64_t m = 0, last = 0, edits = 0;
        for (int64_t j = 0; j < qlen[p]; j++) {
            if (!(q[j] == t[j] && t[j] < 4)) {
                m = put_int(out, m, j - last);
                out[m++] = letters[t[j] < 5 ? t[j] : 5];
                last = j + 1;
                edits++;
            }
        }
        md_len[p] = put_int(out, m, qlen[p] - last);
        nm[p] = (int32_t)edits;
    }
}

#define SRC_START 1
#define SRC_FROM_F 2
#define FROM_E_BIT 4
#define F_EXT_BIT 8

/* One read row of the banded DP for all pairs (align.py's module docstring has the recurrence;
 * the innermost loop runs over pairs, contiguous, so it compiles to SIMD). Arithmetic is int32:
 * every value stays within NEG * 64 (align.py). */
DP_CLONES
static void dp_row(const uint16_t *restrict qi, const uint16_t *restrict t_t, int64_t n, int64_t i, int64_t band, const int32_t *restrict hp_all,
                   const int32_t *restrict fp_all, int32_t *restrict hc_all, int32_t *restrict fc_all, uint16_t *restrict trg,
                   int32_t *restrict run_key, int32_t *restrict row_key, int32_t mt, int32_t mm, int32_t amb, int32_t off, int32_t rs,
                   int32_t oe, int32_t e32) {
    for (int64_t p = 0; p < n; p++) {
        run_key[p] = NEG * 64;
        row_key[p] = NEG * 64;
    }
    for (int64_t b = 0; b < band; b++) {
        const uint16_t *restrict tb = t_t + (i + b) * n;
        const int32_t *restrict hp = hp_all + b * n, *restrict hu = hp_all + (b + 1) * n, *restrict fu = fp_all + (b + 1) * n;
        int32_t *restrict hc = hc_all + b * n, *restrict fc = fc_all + b * n;
        uint16_t *restrict tg = trg + b * n;
        const int32_t eb = e32 * (int32_t)b, bb = (int32_t)b;
        for (int64_t p = 0; p < n; p++) {
            int32_t x = qi[p], y = tb[p];
            /* Scoring.table() as selects (test_kernels checks the two agree, with custom scores). */
            int32_t s = ((x == y) & (x < 4)) ? mt : mm;
            s = ((x == 4) | (y == 4)) ? amb : s;
            s = (y == 5) ? off : s;
            int32_t cont = hp[p] + s;
            int32_t start = s - rs;
            int32_t up_h = hu[p] - oe;
            int32_t up_f = fu[p] - e32;
            int32_t f = max32(up_h, up_f);
            int32_t h0 = max32(max32(cont, start), f);
            int32_t src = h0 == cont ? 0 : (h0 == start ? 1 : 2);
            int32_t rk = run_key[p];
            int32_t e_cur = (rk >> 6) - oe + e32 - eb;
            int32_t from_e = e_cur > h0;
            int32_t h = max32(e_cur, h0);
            /* bits 0-1 H0 source, 2 H from E, 3 F extends, 8-13 the deletion's length */
            tg[p] = (uint16_t)(src | (from_e ? FROM_E_BIT : 0) | (up_f > up_h ? F_EXT_BIT : 0) | ((bb - (rk & 63)) << 8));
            run_key[p] = max32(rk, (h0 + eb) * 64 | bb);
            hc[p] = h;
            fc[p] = f;
            row_key[p] = max32(row_key[p], h * 64 | (63 - bb));
        }
    }
}

/* Banded local-with-clipping affine-gap DP of every pair (align.py's banded_align). q_t (rows, n)
 * and t_t (rows + band - 1, n) are the reads and windows transposed; trace (rows, band, n). */
EXPORT int nm_dp(const uint8_t *q_t, const uint8_t *t_t, int64_t rows, int64_t n, const int64_t *qlen, int64_t band, int64_t match, int64_t mismatch,
          int64_t ambiguous, int64_t off_contig, int64_t o, int64_t e, int64_t clip, uint16_t *trace, int32_t *best, int64_t *best_row,
          int64_t *best_slot) {
    int32_t *h_prev = malloc(sizeof(int32_t) * (band + 1) * n);
    int32_t *f_prev = malloc(sizeof(int32_t) * (band + 1) * n);
    int32_t *h_cur = malloc(sizeof(int32_t) * (band + 1) * n);
    int32_t *f_cur = malloc(sizeof(int32_t) * (band + 1) * n);
    int32_t *run_key = malloc(sizeof(int32_t) * n);
    int32_t *row_key = malloc(sizeof(int32_t) * n);
    /* The codes as uint16, the trace's width: the row loop then works on 16 pairs at a time (with
     * bytes it would take 32, and spill registers). */
    uint16_t *q16 = malloc(sizeof(uint16_t) * (rows * n + 1));
    uint16_t *t16 = malloc(sizeof(uint16_t) * ((rows + band - 1) * n + 1));
    if (!h_prev || !f_prev || !h_cur || !f_cur || !run_key || !row_key || !q16 || !t16) {
        free(h_prev), free(f_prev), free(h_cur), free(f_cur), free(run_key), free(row_key), free(q16), free(t16);
        return -1;
    }
    for (int64_t j = 0; j < rows * n; j++) q16[j] = q_t[j];
    for (int64_t j = 0; j < (rows + band - 1) * n; j++) t16[j] = t_t[j];
    for (int64_t j = 0; j < band * n; j++) h_prev[j] = NEG, f_prev[j] = NEG;
    /* Sentinels past the last slot: an insertion from there scores exactly NEG. */
    for (int64_t p = 0; p < n; p++) {
        h_prev[band * n + p] = h_cur[band * n + p] = NEG + (int32_t)(o + e);
        f_prev[band * n + p] = f_cur[band * n + p] = NEG + (int32_t)e;
    }
    for (int64_t p = 0; p < n; p++) best[p] = NEG, best_row[p] = 0, best_slot[p] = 0;
    const int32_t mt = (int32_t)match, mm = (int32_t)-mismatch, amb = (int32_t)-ambiguous, off = (int32_t)-off_contig;
    const int32_t oe = (int32_t)(o + e), e32 = (int32_t)e;
    for (int64_t i = 0; i < rows; i++) {
        const int32_t rs = i == 0 ? 0 : (int32_t)clip;
        dp_row(q16 + i * n, t16, n, i, band, h_prev, f_prev, h_cur, f_cur, trace + i * band * n, run_key, row_key, mt, mm, amb, off, rs, oe, e32);
        /* Ends: at the last read base for free, earlier for the clipping penalty. */
        for (int64_t p = 0; p < n; p++) {
            const int64_t last_row = qlen[p] - 1;
            if (i <= last_row) {
                int32_t end_score = (row_key[p] >> 6) - (i < last_row ? (int32_t)clip : 0);
                if (end_score > best[p]) {
                    best[p] = end_score;
                    best_row[p] = i;
                    best_slot[p] = 63 - (row_key[p] & 63);
                }
            }
        }
        int32_t *t;
        t = h_prev, h_prev = h_cur, h_cur = t;
        t = f_prev, f_prev = f_cur, f_cur = t;
    }
    free(h_prev), free(f_prev), free(h_cur), free(f_cur), free(run_key), free(row_key), free(q16), free(t16);
    return 0;
}

#define OP_MATCH '='
#define OP_MISMATCH 'X'
#define OP_INS 'I'
#define OP_DEL 'D'

static inline uint8_t m_kind(uint8_t op) { return (op == OP_MATCH || op == OP_MISMATCH) ? 'M' : op; }

/* Walk back from each selected pair's best cell (pairs[n] into the DP's pairs): reference span,
 * NM, CIGAR (with soft clips) and MD as text in cigar/md rows of `room` bytes. */
EXPORT int nm_traceback(const uint16_t *trace, int64_t rows, int64_t band, int64_t n_dp, const int64_t *end_row, const int64_t *end_slot,
                 const int64_t *pairs, int64_t n_out, const uint8_t *query, int64_t q_width, const uint8_t *target, int64_t t_width,
                 const int64_t *qlen, const uint8_t *letters, int64_t *ref_start, int64_t *ref_end, int32_t *nm, uint8_t *cigar,
                 int64_t *cigar_len, uint8_t *md, int64_t *md_len, int64_t room) {
    const int64_t max_steps = rows + band + 2;
    uint8_t *ops = malloc(max_steps);
    int64_t *cols = malloc(sizeof(int64_t) * max_steps);
    if (!ops || !cols) {
        free(ops), free(cols);
        return -1;
    }
    for (int64_t n = 0; n < n_out; n++) {
        const int64_t p = pairs[n];
        const uint8_t *q = query + p * q_width, *t = target + p * t_width;
        int64_t i = end_row[p], b = end_slot[p];
        int state = 0; /* 0 at H, 1 at H0, 2 in an insertion, 3 in a deletion */
        int64_t del_left = 0, left_clip = 0, steps = 0, lo = -1, hi = -1;
        for (int64_t s = 0; s < max_steps; s++) {
            const uint16_t cell = trace[(i * band + b) * n_dp + p];
            if (state == 0) {
                if (cell & FROM_E_BIT) {
                    del_left = cell >> 8;
                    state = 3;
                } else {
                    state = 1;
                }
            }
            const int src = cell & 3;
            if (state == 1 && src == SRC_FROM_F) state = 2;
            const int64_t col = i + b;
            if (state == 1) { /* diagonal: match or mismatch, possibly the alignment's first base */
                const uint8_t qb = q[i];
                ops[steps] = (qb == t[col] && qb < 4) ? OP_MATCH : OP_MISMATCH;
                cols[steps++] = col;
                if (src == SRC_START || i == 0) {
                    left_clip = i;
                    break;
                }
                i--;
                state = 0;
            } else if (state == 2) {
                ops[steps] = OP_INS;
                cols[steps++] = -1;
                const int ext = cell & F_EXT_BIT;
                i--;
                b++;
                if (!ext) state = 0;
            } else {
                ops[steps] = OP_DEL;
                cols[steps++] = col;
                b--;
                if (--del_left == 0) state = 1;
            }
        }
        for (int64_t j = 0; j < steps; j++) { /* the reference span: columns of matches and deletions */
            if (cols[j] >= 0) {
                lo = lo < 0 ? cols[j] : min64(lo, cols[j]);
                hi = max64(hi, cols[j] + 1);
            }
        }
        ref_start[n] = lo, ref_end[n] = hi;
        const int64_t right_clip = qlen[p] - 1 - end_row[p];
        /* CIGAR, forward order: clips, then runs of M (= or X), I, D. */
        uint8_t *cg = cigar + n * room;
        int64_t c = 0, edits = 0;
        if (left_clip) {
            c = put_int(cg, c, left_clip);
            cg[c++] = 'S';
        }
        for (int64_t j = steps - 1; j >= 0;) {
            const uint8_t kind = m_kind(ops[j]);
            int64_t run = 0;
            while (j >= 0 && m_kind(ops[j]) == kind) {
                if (ops[j] != OP_MATCH) edits++;
                run++;
                j--;
            }
            c = put_int(cg, c, run);
            cg[c++] = kind;
        }
        if (right_clip) {
            c = put_int(cg, c, right_clip);
            cg[c++] = 'S';
        }
        cigar_len[n] = c;
        nm[n] = (int32_t)edits;
        /* MD: matches counted, a mismatch as its reference letter, a deletion as ^letters. */
        uint8_t *mdr = md + n * room;
        int64_t m = 0, pending = 0;
        for (int64_t j = steps - 1; j >= 0;) {
            const uint8_t op = ops[j];
            if (op == OP_MATCH) {
                pending++;
                j--;
            } else if (op == OP_INS) {
                j--;
            } else if (op == OP_MISMATCH) {
                m = put_int(mdr, m, pending);
                pending = 0;
                mdr[m++] = letters[t[cols[j]] < 5 ? t[cols[j]] : 5];
                j--;
            } else {
                m = put_int(mdr, m, pending);
                pending = 0;
                mdr[m++] = '^';
                while (j >= 0 && ops[j] == OP_DEL) {
                    mdr[m++] = letters[t[cols[j]] < 5 ? t[cols[j]] : 5];
                    j--;
                }
            }
        }
        md_len[n] = put_int(mdr, m, pending);
    }
    free(ops), free(cols);
    return 0;
}

/* -------------------------------------------------------------------------------- placements */

/* numpy's ascending order of -ll (argsort kind="stable"): NaN last, ties in slot order. */
static inline int ll_before(double a, double b) {  /* does slot a's ll come before b's? (strictly) */
    const double ka = -a, kb = -b;
    if (ka != ka) return 0;
    if (kb != kb) return 1;
    return ka < kb;
}

/* One placement chosen per read (pipeline.place), from `placement` (n x slots: valid windows the
 * alignment has not decided against), their alignment scores and log-likelihoods:
 * - choosable: the placements where the read aligns (score >= min_score), or all of them where
 *   it aligns nowhere;
 * - pickable: the choosable ones within one mismatch (score > best - one_mismatch) of the best
 *   choosable score;
 * - chosen: the first pickable slot of the highest ll (slot 0 where that is not finite: none
 *   pickable, or an infinite or NaN ll, NaN winning the maximum as in numpy);
 * - ties: the pickable slots whose ll equals that highest; tied[r]: more than one.
 * The numpy it replaced is tests/reference_place.py's choose_numpy. */
EXPORT void nm_choose(const uint8_t *placement, const int64_t *score, const double *ll, int64_t n, int64_t slots, int64_t min_score,
                      int64_t one_mismatch, int64_t neg, uint8_t *choosable, int64_t *chosen, uint8_t *ties, uint8_t *tied) {
    for (int64_t r = 0; r < n; r++) {
        const uint8_t *pl = placement + r * slots;
        const int64_t *sc = score + r * slots;
        const double *lr = ll + r * slots;
        uint8_t *ch = choosable + r * slots, *ti = ties + r * slots;
        int aligns = 0;
        for (int64_t j = 0; j < slots; j++) aligns |= pl[j] && sc[j] >= min_score;
        int64_t best_score = neg;
        for (int64_t j = 0; j < slots; j++) {
            ch[j] = (uint8_t)(pl[j] && (!aligns || sc[j] >= min_score));
            if (ch[j] && sc[j] > best_score) best_score = sc[j];
        }
        double best = -INFINITY;
        int64_t first = 0, any_nan = 0;
        for (int64_t j = 0; j < slots; j++) {
            if (!(ch[j] && sc[j] > best_score - one_mismatch)) continue;
            if (lr[j] != lr[j]) { /* NaN: numpy's max is NaN, and argmax the first NaN */
                if (!any_nan) first = j;
                any_nan = 1;
            } else if (!any_nan && lr[j] > best) {
                best = lr[j], first = j;
            }
        }
        if (any_nan) best = NAN;
        chosen[r] = isfinite(best) ? first : 0;
        int64_t count = 0;
        for (int64_t j = 0; j < slots; j++) {
            ti[j] = (uint8_t)(ch[j] && sc[j] > best_score - one_mismatch && lr[j] == best);
            count += ti[j];
        }
        tied[r] = count > 1;
    }
}

/* Per read, for pipeline.describe: whether it has a placement (`has`: a seeded candidate, and the
 * highest likelihood among its valid slots finite: numpy's max over them, NaN if one is NaN,
 * -inf if there is none) and the best alignment score among its valid slots other than the
 * chosen one (`runner`, at least `neg`). tests/reference_place.py keeps the numpy it replaced. */
EXPORT void nm_read_bests(const uint8_t *valid, const uint8_t *seeded, const double *ll, const int64_t *score, const int64_t *chosen,
                          int64_t n, int64_t slots, int64_t neg, uint8_t *has, int64_t *runner) {
    for (int64_t r = 0; r < n; r++) {
        const uint8_t *v = valid + r * slots, *sd = seeded + r * slots;
        const double *lr = ll + r * slots;
        const int64_t *sc = score + r * slots;
        int any_seeded = 0, any_finite = 0, spoiled = 0; /* spoiled: a valid NaN or +inf (the max is not finite) */
        int64_t best = neg;
        for (int64_t j = 0; j < slots; j++) {
            any_seeded |= sd[j];
            if (!v[j]) continue;
            if (lr[j] != lr[j] || lr[j] == INFINITY) spoiled = 1;
            else if (lr[j] != -INFINITY) any_finite = 1;
            if (j != chosen[r] && sc[j] > best) best = sc[j];
        }
        has[r] = (uint8_t)(any_seeded && any_finite && !spoiled);
        runner[r] = best;
    }
}

/* The same placement found twice (pipeline.place): per read, its slots in order of falling ll
 * (stable); a valid slot whose start is within `gap` of an earlier valid, not itself duplicate,
 * slot on the same strand is a duplicate and loses its validity. valid (n x slots) is updated in
 * place. The vectorised numpy it replaced is tests/reference_place.py's. Only the valid slots are
 * ordered and compared: an invalid one neither loses anything nor makes another a duplicate, and
 * the valid ones keep their order among themselves (most reads have one or two of 8 or 16). */
EXPORT int nm_same_placement(const double *ll, const int64_t *start, const uint8_t *reverse, uint8_t *valid,
                             int64_t n, int64_t slots, int64_t gap) {
    int64_t order_here[64], *order = order_here;
    uint8_t dup_here[64], *dup = dup_here;
    if (slots > 64) {  /* -N above 64 */
        order = malloc(slots * sizeof(int64_t));
        dup = malloc(slots);
        if (!order || !dup) {
            free(order == order_here ? NULL : order);
            free(dup == dup_here ? NULL : dup);
            return 1;
        }
    }
    for (int64_t r = 0; r < n; r++) {
        const double *l = ll + r * slots;
        const int64_t *st = start + r * slots;
        const uint8_t *rv = reverse + r * slots;
        uint8_t *v = valid + r * slots;
        int64_t m = 0;  /* valid slots so far */
        for (int64_t j = 0; j < slots; j++) {  /* stable insertion sort of the valid slots */
            if (!v[j]) continue;
            int64_t i = m++;
            while (i > 0 && ll_before(l[j], l[order[i - 1]])) {
                order[i] = order[i - 1];
                i--;
            }
            order[i] = j;
        }
        dup[0] = 0;
        for (int64_t j = 1; j < m; j++) {
            const int64_t b = order[j];
            dup[j] = 0;
            for (int64_t i = 0; i < j && !dup[j]; i++) {
                const int64_t a = order[i];
                const int64_t d = st[a] - st[b];
                dup[j] = !dup[i] && (d <= gap && -d <= gap) && rv[a] == rv[b];
            }
        }
        for (int64_t j = 1; j < m; j++)
            if (dup[j]) v[order[j]] = 0;
    }
    if (order != order_here) {
        free(order);
        free(dup);
    }
    return 0;
}

/* What each read's unscored placements are taken to be worth (pipeline.unscored_ll): the median
 * of values[r, j] over its valid slots j < seeded, leaving out the chosen slot unless it is the
 * only one; NaN values are skipped; a result that is not finite, or no value at all, is 0. As
 * numpy's nanmedian: for an even count the two middle values' sum halved. */
EXPORT int nm_unscored(const double *values, const uint8_t *valid, const int64_t *chosen, int64_t n, int64_t slots, int64_t seeded,
                       double *out) {
    double here[64], *kept = here;
    if (seeded > 64 && !(kept = malloc(seeded * sizeof(double)))) return 1;
    for (int64_t r = 0; r < n; r++) {
        const uint8_t *v = valid + r * slots;
        const double *x = values + r * slots;
        int64_t count = 0, skip = -1;
        for (int64_t j = 0; j < seeded; j++) count += v[j] != 0;
        if (chosen[r] < seeded && count > 1) {
            skip = chosen[r];
            count -= v[skip] != 0;
        }
        int64_t m = 0;
        for (int64_t j = 0; j < seeded; j++) {
            if (!v[j] || j == skip || x[j] != x[j]) continue;
            double value = x[j];
            int64_t i = m++;
            while (i > 0 && kept[i - 1] > value) {  /* insertion sort, ascending */
                kept[i] = kept[i - 1];
                i--;
            }
            kept[i] = value;
        }
        double middle = 0.0;  /* none (or only NaN): not finite in numpy, so 0 */
        if (count >= 1 && m) middle = m % 2 ? kept[m / 2] : (kept[m / 2 - 1] + kept[m / 2]) / 2.0;
        out[r] = middle - middle == 0.0 ? middle : 0.0;  /* 0 where not finite */
    }
    if (kept != here) free(kept);
    return 0;
}

/* k-mer codes of row[0..width) into out[0..width-k]: -1 where a base is not A/C/G/T. */
static void kmer_codes(const uint8_t *row, int64_t width, int64_t k, int64_t *out) {
    const uint64_t keep = k >= 32 ? ~0ull : (1ull << (2 * k)) - 1;
    uint64_t value = 0;
    int64_t run = 0;  /* A/C/G/T bases ending at column j */
    for (int64_t j = 0; j < width; j++) {
        if (row[j] < 4) {
            value = (value << 2 | row[j]) & keep;
            run++;
        } else {
            run = 0;
        }
        if (j + 1 >= k) out[j + 1 - k] = run >= k ? (int64_t)value : -1;
    }
}

/* Mate rescue's need (pairing.add_rescued): need[r, j] for read r and anchor slot j < anchors of
 * its partner (r + n or r - n): the anchor is a placement, read r is at least k long, and none of
 * r's valid placements pairs with it as FR on its contig at an insert within [bounds[0],
 * bounds[1]] (the insert of pairing._fr_insert, compared as a double as numpy compares it). */
EXPORT void nm_rescue_need(const uint8_t *valid, const int64_t *diagonal, const uint8_t *reverse, const int32_t *contig,
                           const int64_t *length, int64_t n, int64_t slots, int64_t anchors, const double *bounds, int64_t k,
                           uint8_t *need) {
    const double low = bounds[0], high = bounds[1];
    for (int64_t r = 0; r < 2 * n; r++) {
        const int64_t p = r < n ? r + n : r - n, len_r = length[r], len_p = length[p];
        for (int64_t j = 0; j < anchors; j++) {
            const int64_t pa = p * slots + j;
            uint8_t out = 0;
            if (valid[pa] && len_r >= k) {
                const int64_t a_diag = diagonal[pa];
                const uint8_t a_rev = reverse[pa];
                const int32_t a_ctg = contig[pa];
                out = 1;
                for (int64_t s = 0; s < slots; s++) {
                    const int64_t rs = r * slots + s;
                    if (!valid[rs] || contig[rs] != a_ctg || (reverse[rs] != 0) == (a_rev != 0)) continue;
                    const int64_t fwd_start = a_rev ? diagonal[rs] : a_diag;
                    const int64_t rev_end = a_rev ? a_diag + len_p : diagonal[rs] + len_r;
                    const double ins = (double)(rev_end - fwd_start);
                    if (ins >= low && ins <= high) {
                        out = 0;
                        break;
                    }
                }
            }
            need[r * anchors + j] = out;
        }
    }
}

/* Mate rescue's search (pairing._vote): per task, the diagonals (target column of query column 0)
 * with the most exact k-mer hits of the query in its target window, `hits` of them at least
 * `separation` apart; among equal votes the one nearest to expect[t] first. A query k-mer counts
 * its first 64 places in the target (low complexity). diags/votes: (n_tasks, hits).
 * The query's k-mers go into a small open-addressing table (each with its query places chained
 * and how often the target has shown it so far); the target is then read once, left to right:
 * each k-mer found votes from each of its query places while the target has shown it fewer than
 * 64 times: what sorting the target's k-mers and counting the first 64 of each gave, in a
 * seventh of the time (benchmarks/RESULTS-pe-batch-19.md). */
EXPORT int nm_rescue_vote(const uint8_t *query, int64_t n_tasks, int64_t q_width, const uint8_t *target, int64_t t_width,
                          const int64_t *expect, int64_t k, int64_t hits, int64_t separation, int64_t *diags, int64_t *votes) {
    const int64_t n_diag = t_width + q_width, qk_n = q_width >= k ? q_width - k + 1 : 0, tk_n = t_width >= k ? t_width - k + 1 : 0;
    int64_t size = 16;
    while (size < 2 * (qk_n + 1)) size *= 2;
    int64_t *qk = malloc((qk_n + 1) * sizeof(int64_t)), *tk = malloc((tk_n + 1) * sizeof(int64_t));
    int64_t *tally = malloc((n_diag + 1) * sizeof(int64_t)), *next_q = malloc((qk_n + 1) * sizeof(int64_t));
    int64_t *slot_kmer = malloc(size * sizeof(int64_t)), *slot_first = malloc(size * sizeof(int64_t)), *slot_seen = malloc(size * sizeof(int64_t));
    if (!qk || !tk || !tally || !next_q || !slot_kmer || !slot_first || !slot_seen) {
        free(qk); free(tk); free(tally); free(next_q); free(slot_kmer); free(slot_first); free(slot_seen);
        return 1;
    }
    const uint64_t mask = (uint64_t)size - 1;
    int64_t total = 0;
    for (int64_t t = 0; t < n_tasks; t++) {
        kmer_codes(query + t * q_width, q_width, k, qk);
        kmer_codes(target + t * t_width, t_width, k, tk);
        for (int64_t i = 0; i < size; i++) slot_kmer[i] = -1;
        /* Each query place chained after the later ones of its k-mer: a target place then votes
         * from the query's places in falling order, as the tally does not care. */
        for (int64_t q = 0; q < qk_n; q++) {
            if (qk[q] < 0) continue;
            uint64_t h = ((uint64_t)qk[q] * 0x9E3779B97F4A7C15ull) >> 32 & mask;
            while (slot_kmer[h] >= 0 && slot_kmer[h] != qk[q]) h = (h + 1) & mask;
            if (slot_kmer[h] < 0) {
                slot_kmer[h] = qk[q];
                slot_first[h] = -1;
                slot_seen[h] = 0;
            }
            next_q[q] = slot_first[h];
            slot_first[h] = q;
        }
        for (int64_t d = 0; d <= n_diag; d++) tally[d] = 0;
        for (int64_t i = 0; i < tk_n; i++) {
            if (tk[i] < 0) continue;
            uint64_t h = ((uint64_t)tk[i] * 0x9E3779B97F4A7C15ull) >> 32 & mask;
            while (slot_kmer[h] >= 0 && slot_kmer[h] != tk[i]) h = (h + 1) & mask;
            if (slot_kmer[h] < 0 || slot_seen[h] >= 64) continue;
            slot_seen[h]++;
            for (int64_t q = slot_first[h]; q >= 0; q = next_q[q]) {
                tally[i - q + q_width]++;
                total++;
            }
        }
        for (int64_t h = 0; h < hits; h++) {
            int64_t best = 0, best_score = 0;
            for (int64_t d = 0; d < n_diag; d++) {
                int64_t distance = d - q_width - expect[t];
                distance = distance < 0 ? -distance : distance;
                if (distance > n_diag) distance = n_diag;
                const int64_t score = tally[d] * (n_diag + 1) - distance;
                if (d == 0 || score > best_score) {
                    best = d;
                    best_score = score;
                }
            }
            votes[t * hits + h] = tally[best];
            diags[t * hits + h] = best - q_width;
            for (int64_t d = best - separation + 1; d < best + separation; d++)
                if (d >= 0 && d < n_diag) tally[d] = 0;
        }
    }
    if (total == 0)  /* no hit in any task: every diagonal 0, as the numpy this replaced gives */
        for (int64_t i = 0; i < n_tasks * hits; i++) diags[i] = 0;
    free(qk); free(tk); free(tally); free(next_q); free(slot_kmer); free(slot_first); free(slot_seen);
    return 0;
}

/* -------------------------------------------------------------------------------- FASTQ text */

static inline int is_printable(uint8_t c) { return c >= '!' && c <= '~'; }
static inline int is_seq_letter(uint8_t c) { return ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') || c == '.'; }

/* Where the first `limit` newlines of buf[0 : len] are, plus `base`, into out; returns how many
 * there are (at most limit). */
EXPORT int64_t nm_newlines(const uint8_t *buf, int64_t len, int64_t limit, int64_t base, int64_t *out) {
    int64_t found = 0;
    const uint8_t *at = buf, *end = buf + len;
    while (found < limit && at < end) {
        const uint8_t *nl = memchr(at, '\n', (size_t)(end - at));
        if (!nl) break;
        out[found++] = base + (nl - buf);
        at = nl + 1;
    }
    return found;
}

/* The n whole 4-line FASTQ records of data[0 : len] (the last newline included), when every one is
 * plain: a header of '@' and a name of 1 to max_name printable characters, then nothing or a
 * space or tab and a comment (ASCII, no CR; Illumina's "1:N:0:ACGT"), a sequence of letters and
 * '.', a line starting with '+' (ASCII, no CR), and a quality line of printable characters as
 * long as the sequence. Fills where each name, sequence and quality starts and their lengths (a
 * quality is as long as its sequence); returns 0, or 1 at anything else (fastx.py's parsers then
 * look, and name the problem). */
EXPORT int64_t nm_fastq_plain(const uint8_t *data, int64_t len, int64_t n, int64_t max_name, int64_t *name_start, int64_t *name_len,
                              int64_t *seq_start, int64_t *seq_len, int64_t *qual_start) {
    int64_t at = 0;
    for (int64_t r = 0; r < n; r++) {
        if (at >= len || data[at] != '@') return 1;
        int64_t s = ++at;
        while (at < len && data[at] != '\n' && is_printable(data[at])) at++;
        if (at - s < 1 || at - s > max_name) return 1;
        name_start[r] = s, name_len[r] = at - s;
        if (at < len && (data[at] == ' ' || data[at] == '\t'))  /* the comment, which SAM does not carry */
            while (at < len && data[at] != '\n' && data[at] < 128 && data[at] != '\r') at++;
        if (at >= len || data[at] != '\n') return 1;
        at++;
        s = at;
        while (at < len && data[at] != '\n' && is_seq_letter(data[at])) at++;
        if (at >= len || data[at] != '\n') return 1;
        seq_start[r] = s, seq_len[r] = at - s, at++;
        if (at >= len || data[at] != '+') return 1;
        while (at < len && data[at] != '\n' && data[at] < 128 && data[at] != '\r') at++;
        if (at >= len || data[at] != '\n') return 1;
        s = ++at;
        while (at < len && data[at] != '\n' && is_printable(data[at])) at++;
        if (at >= len || data[at] != '\n' || at - s != seq_len[r]) return 1;
        qual_start[r] = s, at++;
    }
    return at == len ? 0 : 1;
}

/* codes (n, width) of rows taken from data: row i is table[data[start[i] + j]] for j < length[i]
 * (at most width), `pad` after. */
EXPORT void nm_encode_rows(const uint8_t *data, const int64_t *start, const int64_t *length, int64_t n, int64_t width, const uint8_t *table,
                           int64_t pad, uint8_t *codes) {
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *src = data + start[i];
        uint8_t *dst = codes + i * width;
        const int64_t m = min64(length[i], width);
        for (int64_t j = 0; j < m; j++) dst[j] = table[src[j]];
        for (int64_t j = m; j < width; j++) dst[j] = (uint8_t)pad;
    }
}

/* Row r's first lengths[r] bytes of buf (rows, width), one after another into out (Texts.rows). */
EXPORT void nm_pack_rows(const uint8_t *buf, int64_t rows, int64_t width, const int64_t *lengths, uint8_t *out) {
    for (int64_t r = 0; r < rows; r++) {
        memcpy(out, buf + r * width, (size_t)lengths[r]);
        out += lengths[r];
    }
}

/* 1 when text a[i] (data[a_start[i] : + a_len[i]]) equals b[i] for every i < n, else 0. */
EXPORT int64_t nm_texts_equal(const uint8_t *data, const int64_t *a_start, const int64_t *a_len, const int64_t *b_start, const int64_t *b_len,
                              int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (a_len[i] != b_len[i] || memcmp(data + a_start[i], data + b_start[i], (size_t)a_len[i]) != 0) return 0;
    return 1;
}

/* Reference bases covered by each CIGAR text buf[start[i] : end[i]] (its M, D, N, = and X
 * operations; "*" covers none). */
EXPORT void nm_ref_spans(const uint8_t *buf, const int64_t *start, const int64_t *end, int64_t n, int64_t *out) {
    for (int64_t i = 0; i < n; i++) {
        int64_t span = 0, number = 0;
        for (int64_t j = start[i]; j < end[i]; j++) {
            const uint8_t c = buf[j];
            if (c >= '0' && c <= '9') {
                number = number * 10 + (c - '0');
                continue;
            }
            if (c == 'M' || c == 'D' || c == 'N' || c == '=' || c == 'X') span += number;
            number = 0;
        }
        out[i] = span;
    }
}

/* --------------------------------------------------------------------------------- SAM text */

/* Where each of n newline-terminated fields of buf starts: field i is buf[off[i] : off[i+1] - 1]. */
EXPORT void nm_field_offsets(const uint8_t *buf, int64_t len, int64_t n, int64_t *off) {
    int64_t f = 0;
    off[0] = 0;
    for (int64_t j = 0; j < len && f < n; j++)
        if (buf[j] == '\n') off[++f] = j + 1;
    while (f < n) off[++f] = len; /* fewer fields than n: the rest empty (not reached from Python) */
}

static inline int64_t put_signed(uint8_t *buf, int64_t at, int64_t value) {
    if (value < 0) {
        buf[at++] = '-';
        value = -value;
    }
    return put_int(buf, at, value);
}

static inline int64_t put_field(uint8_t *out, int64_t at, const uint8_t *buf, const int64_t *start, const int64_t *end, int64_t i) {
    int64_t len = end[i] - start[i];
    memcpy(out + at, buf + start[i], (size_t)len);
    return at + len;
}

/* SEQ or QUAL: "*" when empty; reversed when flip, and then passed through `complement` when it
 * is given (SEQ; QUAL is only reversed). */
static inline int64_t put_oriented(uint8_t *out, int64_t at, const uint8_t *buf, const int64_t *start, const int64_t *end, int64_t i, int flip,
                                   const uint8_t *complement) {
    const int64_t len = end[i] - start[i];
    const uint8_t *field = buf + start[i];
    if (len == 0) {
        out[at] = '*';
        return at + 1;
    }
    if (!flip) {
        memcpy(out + at, field, (size_t)len);
    } else if (complement) {
        for (int64_t j = 0; j < len; j++) out[at + j] = complement[field[len - 1 - j]];
    } else {
        for (int64_t j = 0; j < len; j++) out[at + j] = field[len - 1 - j];
    }
    return at + len;
}

static inline int64_t put_text(uint8_t *out, int64_t at, const char *text, int64_t len) {
    memcpy(out + at, text, (size_t)len);
    return at + len;
}

/* One batch's SAM records, read order[0], order[1], ... (io/sam.py's format_sam computes every
 * number; this writes the text). Per read r: rname, rnext are contig indices, or -1 for "*"
 * (rnext -2 for "="); mate[r] >= 0 adds MC:Z:<its CIGAR> and MQ:i:<its MAPQ>; xs[r] > NEG
 * adds XS:i. String field i of each kind is buf[start[i] : end[i]] of its buffer (joined by
 * nm_field_offsets' newlines, or the FASTQ records as read: nm_fastq_plain). For a read with flip[r], SEQ is written reverse complemented (`complement`,
 * 256 entries) and QUAL reversed; an empty one is "*". rg is "\tRG:Z:<id>" or empty.
 * Returns the length written, or -1 where `cap` would be passed (never, with the bound
 * format_sam gives). */
EXPORT int64_t nm_format_sam(int64_t n_out, const int64_t *order, const uint8_t *mapped, const int64_t *flag, const int64_t *rname, const int64_t *pos,
                             const int64_t *mapq, const int64_t *rnext, const int64_t *pnext, const int64_t *tlen, const int64_t *mate,
                             const int64_t *nm, const int64_t *as, const int64_t *xs,
                             const uint8_t *flip, const uint8_t *complement,
                             const uint8_t *names, const int64_t *names_s, const int64_t *names_e, const uint8_t *cigar, const int64_t *cigar_s,
                             const int64_t *cigar_e, const uint8_t *md, const int64_t *md_s, const int64_t *md_e, const uint8_t *seq,
                             const int64_t *seq_s, const int64_t *seq_e, const uint8_t *qual, const int64_t *qual_s, const int64_t *qual_e,
                             const uint8_t *pc, const int64_t *pc_s, const int64_t *pc_e, const uint8_t *contigs, const int64_t *contig_s,
                             const int64_t *contig_e, const uint8_t *rg, int64_t rg_len,
                             uint8_t *out, int64_t cap) {
    int64_t at = 0;
    for (int64_t k = 0; k < n_out; k++) {
        const int64_t r = order[k], m = mate[r];
        /* A bound on this record: its text fields, two contig names, the mate's CIGAR and 20 numbers. */
        int64_t need = (names_e[r] - names_s[r]) + (seq_e[r] - seq_s[r]) + (qual_e[r] - qual_s[r]) + (cigar_e[r] - cigar_s[r])
                       + (md_e[r] - md_s[r]) + (pc_e[r] - pc_s[r]) + rg_len + 512;
        if (rname[r] >= 0) need += contig_e[rname[r]] - contig_s[rname[r]];
        if (rnext[r] >= 0) need += contig_e[rnext[r]] - contig_s[rnext[r]];
        if (m >= 0) need += cigar_e[m] - cigar_s[m];
        if (at + need > cap) return -1;
        at = put_field(out, at, names, names_s, names_e, r);
        out[at++] = '\t';
        at = put_int(out, at, flag[r]);
        out[at++] = '\t';
        at = rname[r] >= 0 ? put_field(out, at, contigs, contig_s, contig_e, rname[r]) : put_text(out, at, "*", 1);
        out[at++] = '\t';
        at = put_int(out, at, pos[r]);
        out[at++] = '\t';
        at = put_int(out, at, mapped[r] ? mapq[r] : 0);
        out[at++] = '\t';
        at = mapped[r] ? put_field(out, at, cigar, cigar_s, cigar_e, r) : put_text(out, at, "*", 1);
        out[at++] = '\t';
        at = rnext[r] >= 0 ? put_field(out, at, contigs, contig_s, contig_e, rnext[r]) : put_text(out, at, rnext[r] == -2 ? "=" : "*", 1);
        out[at++] = '\t';
        at = put_int(out, at, pnext[r]);
        out[at++] = '\t';
        at = put_signed(out, at, mapped[r] ? tlen[r] : 0);
        out[at++] = '\t';
        at = put_oriented(out, at, seq, seq_s, seq_e, r, flip[r], complement);
        out[at++] = '\t';
        at = put_oriented(out, at, qual, qual_s, qual_e, r, flip[r], NULL);
        if (mapped[r]) {
            at = put_text(out, at, "\tNM:i:", 6);
            at = put_int(out, at, nm[r]);
            at = put_text(out, at, "\tMD:Z:", 6);
            at = put_field(out, at, md, md_s, md_e, r);
            at = put_text(out, at, "\tAS:i:", 6);
            at = put_signed(out, at, as[r]);
            if (xs[r] > NEG) {
                at = put_text(out, at, "\tXS:i:", 6);
                at = put_signed(out, at, xs[r]);
            }
            at = put_text(out, at, "\tpc:f:", 6);
            at = put_field(out, at, pc, pc_s, pc_e, r);
        }
        if (m >= 0) {
            at = put_text(out, at, "\tMC:Z:", 6);
            at = put_field(out, at, cigar, cigar_s, cigar_e, m);
            at = put_text(out, at, "\tMQ:i:", 6);
            at = put_int(out, at, mapq[m]);
        }
        at = put_text(out, at, (const char *)rg, rg_len);
        out[at++] = '\n';
    }
    return at;
}

/* ------------------------------------------------------------------------------ module init */

#ifndef NEUROMAP_NO_PYTHON
static struct PyModuleDef kernels_module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_kernels",
    .m_doc = "neuromap's compiled loops, called through ctypes (neuromap/kernels.py).",
    .m_size = -1,
};

PyMODINIT_FUNC PyInit__kernels(void) { return PyModule_Create(&kernels_module); }
#endif
