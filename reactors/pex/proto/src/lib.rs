//! The pex reactor's sans-IO core: its state machine, messages and
//! configuration, in a crate without tokio (ADR 0001). The core moves here
//! from `reactor-pex` (issue 15).
