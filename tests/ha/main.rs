//! High availability against real servers: failover on a pg_auto_failover formation, reads
//! from a streaming replica, host choice by `target_session_attrs`. Each story builds its own
//! servers from the installed packages (see `servers`); `.ci/run` installs them when missing.

mod failover;
mod pooler;
mod prerequisites;
mod replica;
mod servers;
