// Segue as a Wwise source plugin: a Sound SFX whose source plays Segue's music from shared
// memory.
//
// Run Segue with `segue run --output shm:segue` (or set SEGUE_SHM_NAME for another name),
// register this plugin with the sound engine (static link: include its factory header; or
// build it as a dynamic plugin library), put the "Segue" source on a looping Sound in the
// authoring tool, and Wwise's audio clock pulls the music: each Execute copies up to
// MaxFrames() frames from the ring. Segue renders just ahead of that read position, so the
// two never drift apart.
//
// Threads: Execute runs on Wwise's audio thread and only calls segue_ring_read (no locks,
// allocation or system calls). Opening, re-attaching after a Segue restart with a new format,
// and closing happen in Init/Term and on a small poller thread this plugin owns.
//
// Format: Segue writes interleaved stereo float32 at its rate (48 kHz by default); Wwise
// buffers are one float array per channel, so Execute reads into a scratch buffer allocated in
// Init and deinterleaves. Run the sound engine at Segue's rate; on a mismatch the source plays
// silence and posts one monitor message rather than playing at the wrong speed.
//
// The company and plugin ids below are placeholders: use the ids registered in your
// SeguePlugin.xml for the authoring side (not part of this example).
//
// Build: examples/build_plugins.sh with WWISE_SDK=/path/to/Wwise/SDK.

#include <AK/SoundEngine/Common/IAkPlugin.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "segue_ring.h"

namespace {

constexpr AkUInt32 kCompanyId = 64;   // placeholder: Wwise reserves 0-63
constexpr AkUInt32 kPluginId = 0x5E6E; // placeholder
constexpr AkUInt32 kScratchFrames = 4096;

class SegueSourceParams : public AK::IAkPluginParam {
public:
    IAkPluginParam* Clone(AK::IAkPluginMemAlloc* in_pAllocator) override {
        return AK_PLUGIN_NEW(in_pAllocator, SegueSourceParams());
    }
    AKRESULT Init(AK::IAkPluginMemAlloc*, const void*, AkUInt32) override { return AK_Success; }
    AKRESULT Term(AK::IAkPluginMemAlloc* in_pAllocator) override {
        AK_PLUGIN_DELETE(in_pAllocator, this);
        return AK_Success;
    }
    AKRESULT SetParamsBlock(const void*, AkUInt32) override { return AK_Success; }
    AKRESULT SetParam(AkPluginParamID, const void*, AkUInt32) override { return AK_Success; }
};

class SegueSource : public AK::IAkSourcePlugin {
public:
    AKRESULT Init(AK::IAkPluginMemAlloc* in_pAllocator, AK::IAkSourcePluginContext* in_pContext,
                  AK::IAkPluginParam*, AkAudioFormat& io_rFormat) override {
        const char* name = std::getenv("SEGUE_SHM_NAME");
        m_context = in_pContext;
        io_rFormat.channelConfig.SetStandard(AK_SPEAKER_SETUP_STEREO);
        m_engineRate = io_rFormat.uSampleRate;
        m_scratch = static_cast<float*>(
            AK_PLUGIN_ALLOC(in_pAllocator, sizeof(float) * kScratchFrames * 2));
        if (m_scratch == nullptr) return AK_InsufficientMemory;
        const int err = segue_ring_open(&m_ring, name != nullptr ? name : "segue");
        if (err == SEGUE_RING_ENAME) return AK_InvalidParameter;
        // Segue may start later (ENOENT): reads give silence until the poller attaches.
        UpdateRateCheck();
        m_quit.store(false);
        m_poller = std::thread([this] {
            while (!m_quit.load(std::memory_order_acquire)) {
                segue_ring_poll(&m_ring);
                UpdateRateCheck();
                std::this_thread::sleep_for(std::chrono::milliseconds(100));
            }
        });
        return AK_Success;
    }

    AKRESULT Term(AK::IAkPluginMemAlloc* in_pAllocator) override {
        m_quit.store(true, std::memory_order_release);
        if (m_poller.joinable()) m_poller.join();
        segue_ring_close(&m_ring);
        if (m_scratch != nullptr) AK_PLUGIN_FREE(in_pAllocator, m_scratch);
        AK_PLUGIN_DELETE(in_pAllocator, this);
        return AK_Success;
    }

    AKRESULT Reset() override { return AK_Success; }

    AKRESULT GetPluginInfo(AkPluginInfo& out_rPluginInfo) override {
        out_rPluginInfo.eType = AkPluginTypeSource;
        out_rPluginInfo.bIsInPlace = true;
        out_rPluginInfo.uBuildVersion = AK_WWISESDK_VERSION_COMBINED;
        return AK_Success;
    }

    // Wwise's audio thread: copy from the ring, never block.
    void Execute(AkAudioBuffer* io_pBuffer) override {
        const AkUInt32 frames = io_pBuffer->MaxFrames();
        const AkUInt32 channels = io_pBuffer->NumChannels();
        const bool play = m_rateMatches.load(std::memory_order_acquire);
        if (m_rateMismatch.load(std::memory_order_relaxed) && !m_rateWarned) {
            m_rateWarned = true;  // once; the monitor is the place a sound designer looks
            m_context->PostMonitorMessage(
                "Segue: stream and sound engine sample rates differ; playing silence",
                AK::Monitor::ErrorLevel_Error);
        }
        for (AkUInt32 done = 0; done < frames;) {
            const AkUInt32 chunk = frames - done < kScratchFrames ? frames - done : kScratchFrames;
            if (play) {
                segue_ring_read(&m_ring, m_scratch, chunk, 2);
            } else {
                std::memset(m_scratch, 0, sizeof(float) * chunk * 2);
            }
            for (AkUInt32 c = 0; c < channels; ++c) {
                AkSampleType* out = io_pBuffer->GetChannel(c) + done;
                for (AkUInt32 f = 0; f < chunk; ++f) out[f] = c < 2 ? m_scratch[f * 2 + c] : 0.0f;
            }
            done += chunk;
        }
        io_pBuffer->uValidFrames = static_cast<AkUInt16>(frames);
        io_pBuffer->eState = AK_DataReady;  // an endless source: Segue keeps streaming
    }

    AkReal32 GetDuration() const override { return 0.0f; }  // infinite
    AKRESULT StopLooping() override { return AK_Success; }

private:
    void UpdateRateCheck() {
        segue_ring_status status;
        segue_ring_status_get(&m_ring, &status);
        const bool matches = status.attached && status.sample_rate == m_engineRate;
        m_rateMismatch.store(status.attached && !matches, std::memory_order_relaxed);
        m_rateMatches.store(matches, std::memory_order_release);
    }

    AK::IAkSourcePluginContext* m_context = nullptr;
    segue_ring m_ring{};
    float* m_scratch = nullptr;
    AkUInt32 m_engineRate = 0;
    std::atomic<bool> m_rateMatches{false};
    std::atomic<bool> m_rateMismatch{false};
    std::atomic<bool> m_quit{false};
    bool m_rateWarned = false;  // audio thread only
    std::thread m_poller;
};

}  // namespace

AK::IAkPlugin* CreateSegueSource(AK::IAkPluginMemAlloc* in_pAllocator) {
    return AK_PLUGIN_NEW(in_pAllocator, SegueSource());
}

AK::IAkPluginParam* CreateSegueSourceParams(AK::IAkPluginMemAlloc* in_pAllocator) {
    return AK_PLUGIN_NEW(in_pAllocator, SegueSourceParams());
}

AK_IMPLEMENT_PLUGIN_FACTORY(SegueSource, AkPluginTypeSource, kCompanyId, kPluginId)
