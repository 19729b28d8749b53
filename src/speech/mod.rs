//! The speech layer: resampling, VAD and endpointing of 8 kHz caller audio,
//! Whisper recognition on a blocking pool, espeak-ng synthesis with a
//! cache, and model provisioning (CTranslate2 packages from PyPI converted
//! to whisper.cpp ggml files). It never touches SIP, RTP or SQL.

#[cfg(feature = "whisper")]
pub mod cli;
pub mod convert;
pub mod ct2;
pub mod endpoint;
pub mod fair_queue;
pub mod ggml;
pub mod guard;
pub mod layout;
pub mod mel;
pub mod models;
#[cfg(feature = "whisper")]
pub mod pool;
pub mod resample;
#[cfg(feature = "whisper")]
pub mod stt;
pub mod tts;
pub mod tts_cache;
pub mod vad;
pub mod voicemail;
#[cfg(feature = "whisper")]
pub mod wav;

#[cfg(test)]
mod testutil;
