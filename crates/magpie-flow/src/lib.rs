//! Magpie integration flows: messages, expressions, steps and the runner
