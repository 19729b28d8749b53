//! The speech layer: resampling, VAD and endpointing of 8 kHz caller audio,
//! Whisper recognition on a blocking pool, espeak-ng synthesis with a
//! cache, and model provisioning (CTranslate2 packages from PyPI converted
//! to whisper.cpp ggml files). It never touches SIP, RTP or SQL.

#[cfg(feature = "whisper")]
pub mod cli;
pub mod convert;
pub mod endpoint;
pub mod fair_queue;
pub mod guard;
pub mod ct2;
pub mod ggml;
pub mod layout;
pub mod mel;
pub mod models;
pub mod resample;
pub mod tts;
pub mod tts_cache;
pub mod vad;
#[cfg(feature = "whisper")]
pub mod pool;
#[cfg(feature = "whisper")]
pub mod stt;
#[cfg(feature = "whisper")]
pub mod wav;

#[cfg(test)]
mod testutil;
