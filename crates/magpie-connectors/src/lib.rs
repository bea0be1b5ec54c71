//! Robot connectors: payloads, signing, limits and answer classification
