/*
 * Segue as an FMOD DSP plugin: a generator that plays Segue's music from shared memory.
 *
 * Run Segue with `segue run --output shm:segue` (or set SEGUE_SHM_NAME for another name),
 * load this plugin (FMOD Studio: Plugins folder; Core API: System::loadPlugin, then
 * System::createDSPByPlugin and System::playDSP), and FMOD's mixer clock pulls the music:
 * each read callback copies `length` frames from the ring. Segue renders just ahead of that
 * read position, so the two never drift apart.
 *
 * Threads: the read callback runs on FMOD's mixer thread and only calls segue_ring_read (no
 * locks, allocation or system calls). Opening, re-attaching after a Segue restart with a new
 * format, and closing happen in create/release and on a small poller thread this plugin owns.
 *
 * Format: Segue writes stereo float32 at its sample rate (48 kHz by default). Run FMOD's
 * system at the same rate; on a mismatch the plugin plays silence and says so once through
 * FMOD's log, rather than playing at the wrong speed. On a non-stereo output Segue's left
 * and right go to the first two channels (mono: their average) and the rest stay silent;
 * DSP::setChannelFormat(0, 2, FMOD_SPEAKERMODE_STEREO) gives FMOD a stereo source to pan.
 *
 * Build: examples/build_plugins.sh with FMOD_SDK=/path/to/fmod/api/core.
 */
#define _POSIX_C_SOURCE 200809L

#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include "fmod.h"
#include "segue_ring.h"

#define SEGUE_FMOD_POLL_NS 100000000L /* 100 ms: re-attach soon after a Segue restart */

typedef struct segue_fmod_state {
    segue_ring ring;
    int ring_usable;       /* open() accepted the name; reads give silence until attached */
    int rate_matches;      /* FMOD's rate equals the ring's; checked off the mixer thread */
    int fmod_rate;
    volatile int quit;     /* release() asks the poller to stop */
    pthread_t poller;
    int poller_started;
} segue_fmod_state;

static void *segue_fmod_poll_thread(void *arg) {
    segue_fmod_state *state = (segue_fmod_state *)arg;
    struct timespec pause = {0, SEGUE_FMOD_POLL_NS};
    while (!__atomic_load_n(&state->quit, __ATOMIC_ACQUIRE)) {
        segue_ring_status status;
        segue_ring_poll(&state->ring);
        segue_ring_status_get(&state->ring, &status);
        __atomic_store_n(&state->rate_matches,
                         status.attached && status.sample_rate == (uint64_t)state->fmod_rate,
                         __ATOMIC_RELEASE);
        nanosleep(&pause, NULL);
    }
    return NULL;
}

static FMOD_RESULT F_CALLBACK segue_fmod_create(FMOD_DSP_STATE *dsp_state) {
    const char *name = getenv("SEGUE_SHM_NAME");
    segue_fmod_state *state;
    int err;
    state = (segue_fmod_state *)FMOD_DSP_ALLOC(dsp_state, sizeof(segue_fmod_state));
    if (state == NULL) return FMOD_ERR_MEMORY;
    memset(state, 0, sizeof *state);
    dsp_state->plugindata = state;
    FMOD_DSP_GETSAMPLERATE(dsp_state, &state->fmod_rate);
    err = segue_ring_open(&state->ring, name != NULL ? name : "segue");
    if (err == SEGUE_RING_ENAME) {
        FMOD_DSP_LOG(dsp_state, FMOD_DEBUG_LEVEL_ERROR, "segue_fmod_create", "%s",
                     segue_ring_strerror(err));
        return FMOD_ERR_INVALID_PARAM;
    }
    if (err != SEGUE_RING_OK) /* Segue may start later: the poller attaches then */
        FMOD_DSP_LOG(dsp_state, FMOD_DEBUG_LEVEL_WARNING, "segue_fmod_create", "%s",
                     segue_ring_strerror(err));
    state->ring_usable = 1;
    state->rate_matches = err == SEGUE_RING_OK &&
                          state->ring.maps[0].sample_rate == (uint64_t)state->fmod_rate;
    if (err == SEGUE_RING_OK && !state->rate_matches)
        FMOD_DSP_LOG(dsp_state, FMOD_DEBUG_LEVEL_ERROR, "segue_fmod_create",
                     "Segue streams %d Hz but FMOD mixes at %d Hz: playing silence",
                     (int)state->ring.maps[0].sample_rate, state->fmod_rate);
    state->poller_started =
        pthread_create(&state->poller, NULL, segue_fmod_poll_thread, state) == 0;
    return FMOD_OK;
}

static FMOD_RESULT F_CALLBACK segue_fmod_release(FMOD_DSP_STATE *dsp_state) {
    segue_fmod_state *state = (segue_fmod_state *)dsp_state->plugindata;
    if (state == NULL) return FMOD_OK;
    __atomic_store_n(&state->quit, 1, __ATOMIC_RELEASE);
    if (state->poller_started) pthread_join(state->poller, NULL);
    segue_ring_close(&state->ring);
    FMOD_DSP_FREE(dsp_state, state);
    dsp_state->plugindata = NULL;
    return FMOD_OK;
}

/* FMOD's mixer thread: copy from the ring, never block. */
static FMOD_RESULT F_CALLBACK segue_fmod_read(FMOD_DSP_STATE *dsp_state, float *inbuffer,
                                              float *outbuffer, unsigned int length,
                                              int inchannels, int *outchannels) {
    segue_fmod_state *state = (segue_fmod_state *)dsp_state->plugindata;
    int channels = *outchannels;
    (void)inbuffer;
    (void)inchannels;
    if (channels <= 0) return FMOD_OK;
    if (!__atomic_load_n(&state->rate_matches, __ATOMIC_ACQUIRE)) {
        memset(outbuffer, 0, (size_t)length * (size_t)channels * sizeof(float));
        return FMOD_OK;
    }
    segue_ring_read(&state->ring, outbuffer, length, (uint32_t)channels);
    return FMOD_OK;
}

/* A generator has no input to go idle: always process. */
static FMOD_RESULT F_CALLBACK segue_fmod_should_process(FMOD_DSP_STATE *dsp_state,
                                                        FMOD_BOOL inputsidle, unsigned int length,
                                                        FMOD_CHANNELMASK inmask, int inchannels,
                                                        FMOD_SPEAKERMODE speakermode) {
    (void)dsp_state;
    (void)inputsidle;
    (void)length;
    (void)inmask;
    (void)inchannels;
    (void)speakermode;
    return FMOD_OK;
}

static FMOD_DSP_DESCRIPTION segue_fmod_description = {
    .pluginsdkversion = FMOD_PLUGIN_SDK_VERSION,
    .name = "Segue",
    .version = 0x00010000,
    .numinputbuffers = 0,
    .numoutputbuffers = 1,
    .create = segue_fmod_create,
    .release = segue_fmod_release,
    .read = segue_fmod_read,
    .shouldiprocess = segue_fmod_should_process,
};

F_EXPORT FMOD_DSP_DESCRIPTION *F_CALL FMODGetDSPDescription(void) {
    return &segue_fmod_description;
}
