/*
 * segue_ring.h: read Segue's music from shared memory, in any C or C++ audio host.
 *
 * Header-only, C99 (or C++). Segue (`segue run --output shm:NAME`) writes its mix into a
 * single-producer / single-consumer ring in POSIX shared memory; this file is the consumer.
 * The layout is defined once, in engine/audio/ring.py (field table and protocol); the constants
 * below mirror it and Segue's tests check that they match.
 *
 *   segue_ring ring;
 *   int err = segue_ring_open(&ring, "segue");     // any thread; shm_open + mmap
 *   ...
 *   segue_ring_read(&ring, out, frames, 2);        // audio thread: copy, never blocks
 *   ...
 *   segue_ring_poll(&ring);                        // a non-audio thread, e.g. every 100 ms
 *   segue_ring_close(&ring);
 *
 * Threads. segue_ring_read is the real-time path: no locks, no allocation, no system calls,
 * no clock reads; it copies at most `frames` frames and fills the rest with silence. Call it
 * from one thread only (single consumer). open/poll/status/close may call shm_open, mmap,
 * munmap and clock_gettime: call them from a non-audio thread. If open fails (Segue not
 * started yet) the ring is still usable: reads give silence until segue_ring_poll attaches.
 *
 * Protocol (engine/audio/ring.py): the consumer loads write_index with acquire ordering, copies the
 * frames, then stores read_index with release ordering; the producer does the mirror image.
 * Atomics: C11 <stdatomic.h> (atomic_load_explicit / atomic_store_explicit with
 * memory_order_acquire / memory_order_release) when the compiler is C11 with atomics; the
 * equivalent GCC/Clang __atomic builtins in C99 and C++ (std::atomic_ref needs C++20).
 * Both compile to plain aligned 8-byte loads/stores on x86-64 and LDAR/STLR on aarch64.
 *
 * Reopening. A restarted Segue re-attaches to the same segment, so nothing is needed. If it
 * had to recreate the segment (another format), or the segment was removed and recreated,
 * segue_ring_poll maps the new one into a second slot and switches the reader to it with one
 * release store; the old mapping is unmapped at the next switch or at close, long after any
 * read that could still use it has returned.
 *
 * POSIX only (Linux, macOS: shm_open/mmap). On glibc older than 2.34 link with -lrt.
 */
#ifndef SEGUE_RING_H
#define SEGUE_RING_H

/* clock_gettime, CLOCK_MONOTONIC, shm_open and struct timespec are POSIX, not C99/C11: ask
 * for them unless the includer chose a feature set. Include this header before any system
 * header, or define _POSIX_C_SOURCE (200809L or later) yourself. */
#if !defined(_POSIX_C_SOURCE) && !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) && \
    !defined(_DEFAULT_SOURCE) && !defined(_BSD_SOURCE) && !defined(__APPLE__)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- layout, version 1 (mirror of engine/audio/ring.py; all fields u64, native endian) ---- */
#define SEGUE_RING_MAGIC 0x474E524555474553ull /* "SEGUERNG" read as little-endian u64 */
#define SEGUE_RING_VERSION 1u
#define SEGUE_RING_CACHE_LINE_BYTES 64u
#define SEGUE_RING_HEADER_BYTES 4096u
#define SEGUE_RING_OFF_MAGIC 0u
#define SEGUE_RING_OFF_VERSION 8u
#define SEGUE_RING_OFF_SAMPLE_RATE 16u
#define SEGUE_RING_OFF_CHANNELS 24u
#define SEGUE_RING_OFF_CAPACITY_FRAMES 32u
#define SEGUE_RING_OFF_DATA_OFFSET 40u
#define SEGUE_RING_OFF_WRITE_INDEX 64u
#define SEGUE_RING_OFF_READ_INDEX 128u
#define SEGUE_RING_OFF_HEARTBEAT_NS 192u
#define SEGUE_RING_OFF_PRODUCER_STATE 200u
#define SEGUE_RING_OFF_GENERATION 208u
#define SEGUE_RING_OFF_PRODUCER_PID 216u
#define SEGUE_RING_OFF_UNDERRUNS 256u
#define SEGUE_RING_OFF_STOPPED_READS 264u
#define SEGUE_RING_OFF_SILENCE_FRAMES 272u

#define SEGUE_RING_STATE_STOPPED 0u
#define SEGUE_RING_STATE_RUNNING 1u
#define SEGUE_RING_STATE_REPLACED 2u

/* A producer whose heartbeat is older than this is considered gone. */
#define SEGUE_RING_HEARTBEAT_TIMEOUT_NS 250000000ull

/* Errors (negative return values). */
#define SEGUE_RING_OK 0
#define SEGUE_RING_ENAME (-1)    /* name empty, too long, or contains '/' */
#define SEGUE_RING_ENOENT (-2)   /* no such segment: Segue not running with --output shm:NAME */
#define SEGUE_RING_EACCES (-3)   /* segment exists but cannot be opened read-write */
#define SEGUE_RING_EFORMAT (-4)  /* not a Segue ring (size or magic) */
#define SEGUE_RING_EVERSION (-5) /* a Segue ring of another layout version */
#define SEGUE_RING_EMAP (-6)     /* mmap failed */

/* ---- atomics ---- */
#if !defined(__cplusplus) && defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L && \
    !defined(__STDC_NO_ATOMICS__)
#include <stdatomic.h>
#define SEGUE_RING_ATOMICS "c11"
#define SEGUE_RING_LOAD_ACQ(p) \
    atomic_load_explicit((volatile _Atomic uint64_t *)(p), memory_order_acquire)
#define SEGUE_RING_LOAD_RLX(p) \
    atomic_load_explicit((volatile _Atomic uint64_t *)(p), memory_order_relaxed)
#define SEGUE_RING_STORE_REL(p, v) \
    atomic_store_explicit((volatile _Atomic uint64_t *)(p), (v), memory_order_release)
#define SEGUE_RING_STORE_RLX(p, v) \
    atomic_store_explicit((volatile _Atomic uint64_t *)(p), (v), memory_order_relaxed)
#elif defined(__GNUC__) || defined(__clang__)
#define SEGUE_RING_ATOMICS "gnu"
#define SEGUE_RING_LOAD_ACQ(p) __atomic_load_n((volatile uint64_t *)(p), __ATOMIC_ACQUIRE)
#define SEGUE_RING_LOAD_RLX(p) __atomic_load_n((volatile uint64_t *)(p), __ATOMIC_RELAXED)
#define SEGUE_RING_STORE_REL(p, v) \
    __atomic_store_n((volatile uint64_t *)(p), (v), __ATOMIC_RELEASE)
#define SEGUE_RING_STORE_RLX(p, v) \
    __atomic_store_n((volatile uint64_t *)(p), (v), __ATOMIC_RELAXED)
#else
#error "segue_ring.h needs C11 atomics or the GCC/Clang __atomic builtins"
#endif

/* One mapped segment. */
typedef struct segue_ring_map {
    unsigned char *base; /* NULL when the slot is empty */
    size_t bytes;
    const float *data;
    uint64_t sample_rate;
    uint64_t channels;
    uint64_t capacity_frames;
    uint64_t dev;
    uint64_t ino;
} segue_ring_map;

typedef struct segue_ring {
    segue_ring_map maps[2];
    uint64_t current;     /* index into maps; written by poll (release), read by read (acquire) */
    char path[256];       /* "/NAME" as given to shm_open */
    /* Consumer-side counters, written only by the reading thread (approximate elsewhere). */
    uint64_t frames_read;
    uint64_t underruns;      /* reads short of data while the producer was running */
    uint64_t stopped_reads;  /* reads short of data while the producer was stopped/absent */
    uint64_t silence_frames; /* frames filled with silence */
    uint64_t attaches;       /* segments attached so far (open + poll); reopens = attaches - 1 */
} segue_ring;

typedef struct segue_ring_status {
    int attached;          /* a segment is mapped */
    int producer_alive;    /* state running and heartbeat younger than the timeout */
    uint64_t producer_state;
    double heartbeat_age_ms;
    uint64_t sample_rate;
    uint64_t channels;
    uint64_t capacity_frames;
    uint64_t write_index;
    uint64_t read_index;
    uint64_t fill_frames;
    uint64_t generation;   /* producer attaches so far; restarts = generation - 1 */
    uint64_t producer_pid;
    uint64_t shared_underruns;      /* the header's consumer counters (all consumers, ever) */
    uint64_t shared_stopped_reads;
    uint64_t shared_silence_frames;
} segue_ring_status;

static inline uint64_t *segue_ring__field(const segue_ring_map *m, unsigned offset) {
    return (uint64_t *)(void *)(m->base + offset);
}

static inline const char *segue_ring_strerror(int err) {
    switch (err) {
        case SEGUE_RING_OK: return "ok";
        case SEGUE_RING_ENAME: return "bad ring name (1-200 characters, no '/')";
        case SEGUE_RING_ENOENT: return "no such ring: is `segue run --output shm:NAME` running?";
        case SEGUE_RING_EACCES: return "ring exists but cannot be opened read-write";
        case SEGUE_RING_EFORMAT: return "not a Segue ring";
        case SEGUE_RING_EVERSION: return "Segue ring of another layout version";
        case SEGUE_RING_EMAP: return "mmap of the ring failed";
        default: return "unknown error";
    }
}

/* Not real-time. Map the segment at ring->path into *m. */
static inline int segue_ring__map(const segue_ring *ring, segue_ring_map *m) {
    struct stat st;
    void *base;
    const unsigned char *h;
    uint64_t data_offset, need;
    int fd = shm_open(ring->path, O_RDWR, 0);
    if (fd < 0) return errno == ENOENT ? SEGUE_RING_ENOENT : SEGUE_RING_EACCES;
    if (fstat(fd, &st) != 0 || (uint64_t)st.st_size < SEGUE_RING_HEADER_BYTES) {
        close(fd);
        return SEGUE_RING_EFORMAT;
    }
    base = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    close(fd); /* the mapping keeps the segment alive */
    if (base == MAP_FAILED) return SEGUE_RING_EMAP;
    memset(m, 0, sizeof *m);
    m->base = (unsigned char *)base;
    m->bytes = (size_t)st.st_size;
    m->dev = (uint64_t)st.st_dev;
    m->ino = (uint64_t)st.st_ino;
    h = m->base;
    if (SEGUE_RING_LOAD_ACQ(h + SEGUE_RING_OFF_MAGIC) != SEGUE_RING_MAGIC) goto bad_format;
    if (SEGUE_RING_LOAD_RLX(h + SEGUE_RING_OFF_VERSION) != SEGUE_RING_VERSION) {
        munmap(base, m->bytes);
        m->base = NULL;
        return SEGUE_RING_EVERSION;
    }
    m->sample_rate = SEGUE_RING_LOAD_RLX(h + SEGUE_RING_OFF_SAMPLE_RATE);
    m->channels = SEGUE_RING_LOAD_RLX(h + SEGUE_RING_OFF_CHANNELS);
    m->capacity_frames = SEGUE_RING_LOAD_RLX(h + SEGUE_RING_OFF_CAPACITY_FRAMES);
    data_offset = SEGUE_RING_LOAD_RLX(h + SEGUE_RING_OFF_DATA_OFFSET);
    need = data_offset + m->capacity_frames * m->channels * sizeof(float);
    if (m->channels == 0 || m->capacity_frames == 0 || data_offset < SEGUE_RING_HEADER_BYTES ||
        data_offset % sizeof(float) != 0 || need > m->bytes)
        goto bad_format;
    m->data = (const float *)(const void *)(m->base + data_offset);
    return SEGUE_RING_OK;
bad_format:
    munmap(base, m->bytes);
    m->base = NULL;
    return SEGUE_RING_EFORMAT;
}

static inline void segue_ring__unmap(segue_ring_map *m) {
    if (m->base) munmap(m->base, m->bytes);
    memset(m, 0, sizeof *m);
}

/* Not real-time. Open the ring NAME (as in `--output shm:NAME`). On ENOENT and other open
 * errors the ring is still initialised: reads give silence and segue_ring_poll retries.
 * Returns SEGUE_RING_OK or a negative error; on SEGUE_RING_ENAME the ring is unusable. */
static inline int segue_ring_open(segue_ring *ring, const char *name) {
    size_t len = name ? strlen(name) : 0;
    int err;
    memset(ring, 0, sizeof *ring);
    if (len == 0 || len > 200 || strchr(name, '/') != NULL) return SEGUE_RING_ENAME;
    ring->path[0] = '/';
    memcpy(ring->path + 1, name, len + 1);
    err = segue_ring__map(ring, &ring->maps[0]);
    if (err == SEGUE_RING_OK) ring->attaches = 1;
    return err;
}

/* Real-time safe. Copy up to `frames` frames into `out` (interleaved, out_channels per frame)
 * and fill the rest with silence. Ring channels map 1:1 onto the first out channels; extra
 * out channels are silent; a mono host gets the average of the ring's channels.
 * Returns the frames that came from the ring. Single consumer thread only. */
static inline uint32_t segue_ring_read(segue_ring *ring, float *out, uint32_t frames,
                                       uint32_t out_channels) {
    const segue_ring_map *m = &ring->maps[SEGUE_RING_LOAD_ACQ(&ring->current) & 1u];
    uint64_t w, r, available, start, first;
    uint32_t got = 0, f, c, part;
    if (m->base != NULL) {
        w = SEGUE_RING_LOAD_ACQ(segue_ring__field(m, SEGUE_RING_OFF_WRITE_INDEX));
        r = SEGUE_RING_LOAD_RLX(segue_ring__field(m, SEGUE_RING_OFF_READ_INDEX));
        available = w > r ? w - r : 0;
        if (available > m->capacity_frames) available = m->capacity_frames;
        got = available < frames ? (uint32_t)available : frames;
        start = r % m->capacity_frames;
        first = m->capacity_frames - start;
        if (first > got) first = got;
        for (part = 0; part < 2; ++part) {
            /* part 0: [start, start + first); part 1: wrapped tail from slot 0 */
            const float *src = m->data + (part == 0 ? start : 0) * m->channels;
            float *dst = out + (size_t)(part == 0 ? 0 : first) * out_channels;
            uint32_t n = (uint32_t)(part == 0 ? first : got - first);
            if (n == 0) continue;
            if (out_channels == m->channels) {
                memcpy(dst, src, (size_t)n * out_channels * sizeof(float));
            } else if (out_channels == 1) {
                for (f = 0; f < n; ++f) {
                    float sum = 0.0f;
                    for (c = 0; c < m->channels; ++c) sum += src[f * m->channels + c];
                    dst[f] = sum / (float)m->channels;
                }
            } else {
                for (f = 0; f < n; ++f)
                    for (c = 0; c < out_channels; ++c)
                        dst[(size_t)f * out_channels + c] =
                            c < m->channels ? src[f * m->channels + c] : 0.0f;
            }
        }
        /* Only now may the producer reuse the slots. */
        SEGUE_RING_STORE_REL(segue_ring__field(m, SEGUE_RING_OFF_READ_INDEX), r + got);
    }
    ring->frames_read += got;
    if (got < frames) {
        uint64_t missing = frames - got;
        memset(out + (size_t)got * out_channels, 0, (size_t)missing * out_channels * sizeof(float));
        ring->silence_frames += missing;
        if (m->base != NULL &&
            SEGUE_RING_LOAD_ACQ(segue_ring__field(m, SEGUE_RING_OFF_PRODUCER_STATE)) ==
                SEGUE_RING_STATE_RUNNING) {
            uint64_t *u = segue_ring__field(m, SEGUE_RING_OFF_UNDERRUNS);
            ring->underruns += 1;
            SEGUE_RING_STORE_RLX(u, SEGUE_RING_LOAD_RLX(u) + 1);
        } else {
            ring->stopped_reads += 1;
            if (m->base != NULL) {
                uint64_t *s = segue_ring__field(m, SEGUE_RING_OFF_STOPPED_READS);
                SEGUE_RING_STORE_RLX(s, SEGUE_RING_LOAD_RLX(s) + 1);
            }
        }
        if (m->base != NULL) {
            uint64_t *z = segue_ring__field(m, SEGUE_RING_OFF_SILENCE_FRAMES);
            SEGUE_RING_STORE_RLX(z, SEGUE_RING_LOAD_RLX(z) + missing);
        }
    }
    return got;
}

static inline uint64_t segue_ring__now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Not real-time (reads the clock). Snapshot of the ring and the producer. */
static inline void segue_ring_status_get(const segue_ring *ring, segue_ring_status *s) {
    const segue_ring_map *m = &ring->maps[SEGUE_RING_LOAD_ACQ(&ring->current) & 1u];
    uint64_t beat, now;
    memset(s, 0, sizeof *s);
    if (m->base == NULL) return;
    s->attached = 1;
    s->sample_rate = m->sample_rate;
    s->channels = m->channels;
    s->capacity_frames = m->capacity_frames;
    s->write_index = SEGUE_RING_LOAD_ACQ(segue_ring__field(m, SEGUE_RING_OFF_WRITE_INDEX));
    s->read_index = SEGUE_RING_LOAD_ACQ(segue_ring__field(m, SEGUE_RING_OFF_READ_INDEX));
    s->fill_frames = s->write_index > s->read_index ? s->write_index - s->read_index : 0;
    s->producer_state = SEGUE_RING_LOAD_ACQ(segue_ring__field(m, SEGUE_RING_OFF_PRODUCER_STATE));
    s->generation = SEGUE_RING_LOAD_RLX(segue_ring__field(m, SEGUE_RING_OFF_GENERATION));
    s->producer_pid = SEGUE_RING_LOAD_RLX(segue_ring__field(m, SEGUE_RING_OFF_PRODUCER_PID));
    s->shared_underruns = SEGUE_RING_LOAD_RLX(segue_ring__field(m, SEGUE_RING_OFF_UNDERRUNS));
    s->shared_stopped_reads =
        SEGUE_RING_LOAD_RLX(segue_ring__field(m, SEGUE_RING_OFF_STOPPED_READS));
    s->shared_silence_frames =
        SEGUE_RING_LOAD_RLX(segue_ring__field(m, SEGUE_RING_OFF_SILENCE_FRAMES));
    beat = SEGUE_RING_LOAD_RLX(segue_ring__field(m, SEGUE_RING_OFF_HEARTBEAT_NS));
    now = segue_ring__now_ns();
    s->heartbeat_age_ms = now > beat ? (double)(now - beat) / 1e6 : 0.0;
    s->producer_alive = s->producer_state == SEGUE_RING_STATE_RUNNING &&
                        (now > beat ? now - beat : 0) < SEGUE_RING_HEARTBEAT_TIMEOUT_NS;
}

/* Not real-time. Attach if not attached yet; once the current segment is drained, switch to
 * a new one if the producer marked it replaced, or if its producer is silent and NAME now
 * names another segment. Call it from a
 * non-audio thread now and then (e.g. every 100 ms). Returns 1 if it switched, 0 if not,
 * or a negative error from the attempt. */
static inline int segue_ring_poll(segue_ring *ring) {
    uint64_t cur = SEGUE_RING_LOAD_RLX(&ring->current) & 1u;
    segue_ring_map *m = &ring->maps[cur];
    segue_ring_map *spare = &ring->maps[cur ^ 1u];
    int err;
    if (m->base != NULL) {
        segue_ring_status s;
        struct stat st;
        int fd;
        segue_ring_status_get(ring, &s);
        if (s.fill_frames > 0) return 0; /* play out what was published before switching */
        if (s.producer_state != SEGUE_RING_STATE_REPLACED) {
            if (s.producer_alive) return 0;
            /* Silent producer: has NAME been recreated under us? */
            fd = shm_open(ring->path, O_RDONLY, 0);
            if (fd < 0) return 0;
            err = fstat(fd, &st);
            close(fd);
            if (err != 0 || ((uint64_t)st.st_dev == m->dev && (uint64_t)st.st_ino == m->ino))
                return 0;
        }
    }
    /* The spare slot was retired at least one poll ago: no read can still be using it. */
    segue_ring__unmap(spare);
    err = segue_ring__map(ring, spare);
    if (err != SEGUE_RING_OK) return err;
    ring->attaches += 1;
    SEGUE_RING_STORE_REL(&ring->current, cur ^ 1u);
    return 1;
}

/* Not real-time. Unmap everything; the segment itself stays for Segue to reuse. */
static inline void segue_ring_close(segue_ring *ring) {
    segue_ring__unmap(&ring->maps[0]);
    segue_ring__unmap(&ring->maps[1]);
    SEGUE_RING_STORE_RLX(&ring->current, 0);
}

#ifdef __cplusplus
}
#endif

#endif /* SEGUE_RING_H */
