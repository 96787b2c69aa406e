//! switchboard's integration tests: the real binary, real third-party peers
//! (Node, `nc`, Python `websockets`), real sockets on loopback, port 0.

mod util;

mod attacks;
mod bench;
mod bounds;
mod chat_auth;
mod chat_cluster;
mod chat_diary;
mod chat_durability;
mod chat_json;
mod chat_line;
mod chat_page;
mod chat_tls;
mod chat_web;
mod cli_errors;
mod config;
mod connect;
mod connect_tls;
mod echo_tcp;
mod echo_udp;
mod echo_ws;
mod limits;
mod send;
