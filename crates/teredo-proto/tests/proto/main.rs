//! The integration tests of the protocol core, as one test binary: known answers from
//! real captures and from the RFCs, decoding agreement with tshark, property tests of
//! every builder/parser pair and of the server's rules, and the replay of the fuzz corpora.

mod corpus;
mod interop;
mod known_answers;
mod pcap;
mod properties;
mod rfc6081;
mod secure;
mod server_rules;
mod tshark;
