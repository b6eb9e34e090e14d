/*
 * ring_consumer: a stand-in for a host mixer reading Segue's shared-memory ring.
 *
 *   ring_consumer NAME SECONDS OUT.raw [BLOCK_FRAMES]   read at a steady pace, write samples
 *   ring_consumer --layout                             print the header constants as JSON
 *
 * It wakes on absolute CLOCK_MONOTONIC deadlines one block apart (256 frames at the ring's
 * sample rate, like an audio device), reads one block per deadline, appends it to OUT.raw
 * (interleaved float32, one write(2) per block so a killed consumer leaves whole blocks),
 * and calls segue_ring_poll about every 100 ms between reads, as a host's main thread would.
 * When it wakes more than a block late it does not burst to catch up; like a device after an
 * xrun it re-anchors its schedule at the late wake-up and counts a late wakeup.
 * Prints one JSON line when it starts and one with its counters when it ends:
 *   gaps: blocks that carried any silence (the host heard a hole)
 *   late_wakeups: deadlines this program itself missed by more than one block
 */
#define _POSIX_C_SOURCE 200809L

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "segue_ring.h"

#define MAX_BLOCK_FRAMES 8192
#define MAX_CHANNELS 8

static float buffer[MAX_BLOCK_FRAMES * MAX_CHANNELS];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void print_layout(void) {
    printf("{\"magic\": %llu, \"version\": %u, \"header_bytes\": %u, \"atomics\": \"%s\", "
           "\"offsets\": {\"magic\": %u, \"version\": %u, \"sample_rate\": %u, \"channels\": %u, "
           "\"capacity_frames\": %u, \"data_offset\": %u, \"write_index\": %u, "
           "\"read_index\": %u, \"heartbeat_ns\": %u, \"producer_state\": %u, "
           "\"generation\": %u, \"producer_pid\": %u, \"underruns\": %u, "
           "\"stopped_reads\": %u, \"silence_frames\": %u}, "
           "\"states\": {\"stopped\": %u, \"running\": %u, \"replaced\": %u}, "
           "\"heartbeat_timeout_ns\": %llu}\n",
           (unsigned long long)SEGUE_RING_MAGIC, SEGUE_RING_VERSION, SEGUE_RING_HEADER_BYTES,
           SEGUE_RING_ATOMICS, SEGUE_RING_OFF_MAGIC, SEGUE_RING_OFF_VERSION,
           SEGUE_RING_OFF_SAMPLE_RATE, SEGUE_RING_OFF_CHANNELS, SEGUE_RING_OFF_CAPACITY_FRAMES,
           SEGUE_RING_OFF_DATA_OFFSET, SEGUE_RING_OFF_WRITE_INDEX, SEGUE_RING_OFF_READ_INDEX,
           SEGUE_RING_OFF_HEARTBEAT_NS, SEGUE_RING_OFF_PRODUCER_STATE,
           SEGUE_RING_OFF_GENERATION, SEGUE_RING_OFF_PRODUCER_PID, SEGUE_RING_OFF_UNDERRUNS,
           SEGUE_RING_OFF_STOPPED_READS, SEGUE_RING_OFF_SILENCE_FRAMES,
           SEGUE_RING_STATE_STOPPED, SEGUE_RING_STATE_RUNNING, SEGUE_RING_STATE_REPLACED,
           (unsigned long long)SEGUE_RING_HEARTBEAT_TIMEOUT_NS);
}

int main(int argc, char **argv) {
    segue_ring ring;
    segue_ring_status st;
    uint64_t anchor_ns, anchor_block = 0, deadline_ns, period_num, block_index, total_blocks, max_late_ns = 0;
    uint64_t gaps = 0, late_wakeups = 0, next_poll_ns;
    uint32_t block_frames = 256, channels, sample_rate;
    double seconds;
    int err, out_fd;

    if (argc == 2 && strcmp(argv[1], "--layout") == 0) {
        print_layout();
        return 0;
    }
    if (argc < 4 || argc > 5) {
        fprintf(stderr, "usage: %s NAME SECONDS OUT.raw [BLOCK_FRAMES] | --layout\n", argv[0]);
        return 2;
    }
    seconds = atof(argv[2]);
    if (argc == 5) block_frames = (uint32_t)atoi(argv[4]);
    if (block_frames == 0 || block_frames > MAX_BLOCK_FRAMES || seconds <= 0) {
        fprintf(stderr, "bad SECONDS or BLOCK_FRAMES\n");
        return 2;
    }
    err = segue_ring_open(&ring, argv[1]);
    if (err != SEGUE_RING_OK) {
        printf("{\"error\": \"%s\"}\n", segue_ring_strerror(err));
        return 1;
    }
    if (ring.maps[0].channels > MAX_CHANNELS) {
        printf("{\"error\": \"too many channels\"}\n");
        return 1;
    }
    /* The host's format is fixed when it starts: the ring's format at open time. */
    channels = (uint32_t)ring.maps[0].channels;
    sample_rate = (uint32_t)ring.maps[0].sample_rate;
    out_fd = open(argv[3], O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (out_fd < 0) {
        perror(argv[3]);
        return 1;
    }
    segue_ring_status_get(&ring, &st);
    printf("{\"event\": \"started\", \"start_read_index\": %llu, \"generation\": %llu, "
           "\"sample_rate\": %u, \"channels\": %u}\n",
           (unsigned long long)st.read_index, (unsigned long long)st.generation, sample_rate,
           channels);
    fflush(stdout);

    total_blocks = (uint64_t)(seconds * sample_rate / block_frames + 0.5);
    period_num = (uint64_t)block_frames * 1000000000ull; /* deadline k = start + k*num/rate */
    anchor_ns = now_ns();
    next_poll_ns = anchor_ns + 100000000ull;
    for (block_index = 0; block_index < total_blocks; ++block_index) {
        struct timespec ts;
        uint64_t woke_ns, late_ns;
        uint32_t got;
        ssize_t written;
        deadline_ns = anchor_ns + (block_index + 1 - anchor_block) * period_num / sample_rate;
        ts.tv_sec = (time_t)(deadline_ns / 1000000000ull);
        ts.tv_nsec = (long)(deadline_ns % 1000000000ull);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) != 0) {
        }
        woke_ns = now_ns();
        late_ns = woke_ns > deadline_ns ? woke_ns - deadline_ns : 0;
        if (late_ns > max_late_ns) max_late_ns = late_ns;
        if (late_ns * sample_rate > period_num) {
            late_wakeups += 1;
            anchor_ns = woke_ns; /* next deadline one block after this wake-up */
            anchor_block = block_index + 1;
        }

        got = segue_ring_read(&ring, buffer, block_frames, channels);
        if (got < block_frames) gaps += 1;
        written = write(out_fd, buffer, (size_t)block_frames * channels * sizeof(float));
        if (written != (ssize_t)((size_t)block_frames * channels * sizeof(float))) {
            perror("write");
            return 1;
        }
        if (woke_ns >= next_poll_ns) {
            segue_ring_poll(&ring); /* between reads: this program is its own main thread */
            next_poll_ns = woke_ns + 100000000ull;
        }
    }
    close(out_fd);
    segue_ring_status_get(&ring, &st);
    printf("{\"event\": \"finished\", \"blocks\": %llu, \"frames_requested\": %llu, "
           "\"frames_read\": %llu, \"underruns\": %llu, \"stopped_reads\": %llu, "
           "\"silence_frames\": %llu, \"gaps\": %llu, \"late_wakeups\": %llu, "
           "\"max_late_us\": %.1f, \"reopens\": %llu, \"end_read_index\": %llu, "
           "\"generation\": %llu, \"producer_state\": %llu, \"producer_alive\": %d, "
           "\"heartbeat_age_ms\": %.3f, \"fill_frames\": %llu}\n",
           (unsigned long long)total_blocks,
           (unsigned long long)(total_blocks * block_frames),
           (unsigned long long)ring.frames_read, (unsigned long long)ring.underruns,
           (unsigned long long)ring.stopped_reads, (unsigned long long)ring.silence_frames,
           (unsigned long long)gaps, (unsigned long long)late_wakeups, max_late_ns / 1000.0,
           (unsigned long long)(ring.attaches > 0 ? ring.attaches - 1 : 0),
           (unsigned long long)st.read_index, (unsigned long long)st.generation,
           (unsigned long long)st.producer_state, st.producer_alive, st.heartbeat_age_ms,
           (unsigned long long)st.fill_frames);
    segue_ring_close(&ring);
    return 0;
}
