//! Workload files (`peer record --out FILE`, `peer run --workload FILE`):
//! the genesis world state and blocks of transactions, each transaction
//! with the state writes it makes if approved — recorded for every
//! transaction, denied ones included, as computed against the recording
//! run's state — so any chain's history can be exported into it, not only
//! this ledger. `docs/workload.md` is its specification.
//!
//! JSON Lines, one record per line, bytes as lowercase hex, streamed both
//! ways (a reader holds one block at a time, never the file):
//!
//! ```text
//! {"format":"peer-workload","version":1,"transactions":3,"blocks":2,"source":"…"}
//! {"state":["6b6579","76616c7565"]}            genesis entries, before the first block
//! {"block":0}
//! {"tx":"0a0b…","writes":[["6b6579","0100"],["6f6c64",null]]}
//! {"block":1}
//! {"tx":"…","writes":[]}
//! {"end":{"transactions":3,"blocks":2}}
//! ```
//!
//! A reader bounds everything a file could make it allocate (line length,
//! key and value sizes, writes per transaction, genesis bytes, transactions
//! per block) and names the line, block and transaction of any error.

use crate::workload::{Ledger, Writes};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;

/// The `format` of the header.
pub const FORMAT: &str = "peer-workload";
/// The version this build reads and writes.
pub const VERSION: u32 = 1;
/// The longest key: the ABI's `state_get` reads keys of at most 1024
/// bytes, so a longer one could never be read.
pub const MAX_KEY_BYTES: usize = 1024;
/// The longest value.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Writes of one transaction.
pub const MAX_WRITES: usize = 65_536;
/// Genesis bytes (keys and values).
pub const MAX_GENESIS_BYTES: u64 = 1 << 30;
/// Transactions of one block.
pub const MAX_BLOCK_TRANSACTIONS: usize = 1 << 20;

/// The first line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Header {
    /// Always [`FORMAT`].
    pub format: String,
    /// [`VERSION`].
    pub version: u32,
    /// Transactions in the file, if the writer knew (progress only; the
    /// `end` record is checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transactions: Option<u64>,
    /// Blocks in the file, if the writer knew.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<u64>,
    /// Where it came from, for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

/// The last line: what the file held, so a truncated file is an error.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct End {
    /// Transactions written.
    pub transactions: u64,
    /// Blocks written.
    pub blocks: u64,
}

/// Every line after the header.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Record {
    /// A genesis entry: key, value.
    State(Hex, Hex),
    /// A block starts (its index, from 0).
    Block(u64),
    /// The file ends.
    End(End),
    /// A transaction and its writes.
    #[serde(untagged)]
    Tx {
        /// The encoded transaction.
        tx: Hex,
        /// Its writes if approved: key, value (`null`: removed).
        writes: Vec<(Hex, Option<Hex>)>,
    },
}

/// Bytes as lowercase hex in JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hex(Vec<u8>);

impl Serialize for Hex {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(text.as_bytes()).map(Hex).map_err(|e| serde::de::Error::custom(format!("not hex: {e}")))
    }
}

/// One block read back: its transactions and their writes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Block {
    /// The encoded transactions, in order.
    pub txs: Vec<Vec<u8>>,
    /// Each transaction's writes if approved.
    pub writes: Vec<Writes>,
}

/// Writes a workload file as a run goes (see the module docs).
pub struct Recorder<W: Write> {
    out: W,
    transactions: u64,
    blocks: u64,
}

impl<W: Write> Recorder<W> {
    /// Starts a file: the header, then the genesis state.
    pub fn new(mut out: W, header: &Header, genesis: &Ledger) -> std::io::Result<Self> {
        line(&mut out, header)?;
        for (key, value) in genesis.entries() {
            line(&mut out, &Record::State(Hex(key.to_vec()), Hex(value.to_vec())))?;
        }
        Ok(Recorder { out, transactions: 0, blocks: 0 })
    }

    /// Starts the next block.
    pub fn block(&mut self) -> std::io::Result<()> {
        line(&mut self.out, &Record::Block(self.blocks))?;
        self.blocks += 1;
        Ok(())
    }

    /// A transaction of the current block, with what it writes if approved
    /// against the state it is validated on.
    pub fn tx(&mut self, tx: &[u8], writes: &Writes) -> std::io::Result<()> {
        let writes = writes.iter().map(|(k, v)| (Hex(k.clone()), v.clone().map(Hex))).collect();
        line(&mut self.out, &Record::Tx { tx: Hex(tx.to_vec()), writes })?;
        self.transactions += 1;
        Ok(())
    }

    /// Ends the file and returns what it holds.
    pub fn finish(mut self) -> std::io::Result<End> {
        let end = End { transactions: self.transactions, blocks: self.blocks };
        line(&mut self.out, &Record::End(end))?;
        self.out.flush()?;
        Ok(end)
    }
}

fn line<W: Write>(out: &mut W, record: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, record)?;
    out.write_all(b"\n")
}

/// The header of the workload file at `path`, if its first line is one
/// (for a progress bar's length; [`Replay::open`] checks everything).
pub fn peek_header(path: &Path) -> Option<Header> {
    let file = std::fs::File::open(path).ok()?;
    let mut first = String::new();
    BufReader::new(file).take(64 * 1024).read_line(&mut first).ok()?;
    serde_json::from_str(first.trim_end()).ok()
}

/// Reads a workload file block by block (see the module docs).
pub struct Replay {
    input: Box<dyn BufRead + Send>,
    /// The header.
    pub header: Header,
    line: u64,
    max_line: u64,
    blocks: u64,
    transactions: u64,
    /// A block record read ahead of the transactions before it.
    pending_block: Option<u64>,
    /// Whether the last line read had no newline: the file ends in it.
    unterminated: bool,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay").field("header", &self.header).field("line", &self.line).finish_non_exhaustive()
    }
}

impl Replay {
    /// Opens `path` (a regular file) and reads the header and the genesis
    /// state; `max_tx_bytes` bounds one transaction (an upgrade carries a
    /// whole executor: the module size limit). `Err` is a message naming
    /// the line.
    pub fn open(path: &Path, max_tx_bytes: u64) -> Result<(Replay, Ledger), String> {
        // Any size: the reader bounds what it reads line by line.
        let file = crate::input::open_regular(path, u64::MAX)?;
        Replay::from_reader(Box::new(BufReader::new(file)), max_tx_bytes)
    }

    /// [`Replay::open`] on any reader.
    pub fn from_reader(input: Box<dyn BufRead + Send>, max_tx_bytes: u64) -> Result<(Replay, Ledger), String> {
        // A transaction's line: its hex, its writes' hex, and JSON around.
        let max_line = 2 * max_tx_bytes + 2 * (MAX_KEY_BYTES + MAX_VALUE_BYTES) as u64 + 4096;
        let mut replay = Replay {
            input,
            header: Header { format: String::new(), version: 0, transactions: None, blocks: None, source: None },
            line: 0,
            max_line,
            blocks: 0,
            transactions: 0,
            pending_block: None,
            unterminated: false,
        };
        let first = replay.next_line()?.ok_or("empty: no header line")?;
        let header: Header = serde_json::from_str(&first).map_err(|e| replay.at(format!("not a header: {e}")))?;
        if header.format != FORMAT {
            return Err(replay.at(format!("format {:?}, expected {FORMAT:?}", header.format)));
        }
        if header.version != VERSION {
            return Err(replay.at(format!("version {}: this peer reads version {VERSION}", header.version)));
        }
        replay.header = header;
        let mut genesis = Ledger::default();
        let mut bytes = 0u64;
        loop {
            match replay.record()? {
                Some(Record::State(key, value)) => {
                    bytes += (key.0.len() + value.0.len()) as u64;
                    if bytes > MAX_GENESIS_BYTES {
                        return Err(replay.at(format!("genesis state over {MAX_GENESIS_BYTES} bytes")));
                    }
                    replay.check_entry(&key.0, Some(&value.0))?;
                    genesis.write(&key.0, Some(&value.0));
                }
                Some(Record::Block(index)) => {
                    replay.pending_block = Some(index);
                    break;
                }
                Some(Record::End(end)) => {
                    replay.end(end)?;
                    break;
                }
                Some(Record::Tx { .. }) => return Err(replay.at("a transaction before the first block".into())),
                None => return Err(replay.at("truncated: no block and no end record".into())),
            }
        }
        Ok((replay, genesis))
    }

    /// The next block, or `None` after the `end` record.
    pub fn next_block(&mut self) -> Result<Option<Block>, String> {
        let Some(index) = self.pending_block.take() else {
            return Ok(None);
        };
        if index != self.blocks {
            return Err(self.at(format!("block {index} where block {} was expected", self.blocks)));
        }
        let mut block = Block::default();
        loop {
            match self.record()? {
                Some(Record::Tx { tx, writes }) => {
                    if block.txs.len() >= MAX_BLOCK_TRANSACTIONS {
                        return Err(self.in_block(&block, format!("more than {MAX_BLOCK_TRANSACTIONS} transactions")));
                    }
                    if writes.len() > MAX_WRITES {
                        return Err(self.in_block(&block, format!("more than {MAX_WRITES} writes")));
                    }
                    let mut kept = Vec::with_capacity(writes.len());
                    for (key, value) in writes {
                        self.check_entry(&key.0, value.as_ref().map(|v| v.0.as_slice()))
                            .map_err(|e| self.in_block(&block, e))?;
                        kept.push((key.0, value.map(|v| v.0)));
                    }
                    block.txs.push(tx.0);
                    block.writes.push(kept);
                }
                Some(Record::Block(next)) => {
                    self.pending_block = Some(next);
                    break;
                }
                Some(Record::End(end)) => {
                    self.blocks += 1;
                    self.transactions += block.txs.len() as u64;
                    self.end(end)?;
                    return Ok(Some(block));
                }
                Some(Record::State(..)) => return Err(self.in_block(&block, "a state entry after genesis".into())),
                None => {
                    return Err(self.in_block(&block, "truncated: the file ends without an end record".into()));
                }
            }
        }
        self.blocks += 1;
        self.transactions += block.txs.len() as u64;
        Ok(Some(block))
    }

    fn end(&mut self, end: End) -> Result<(), String> {
        let read = End { transactions: self.transactions, blocks: self.blocks };
        if end != read {
            return Err(self.at(format!(
                "the end record says {} transactions in {} blocks, but {} in {} were read",
                end.transactions, end.blocks, read.transactions, read.blocks
            )));
        }
        if self.next_line()?.is_some() {
            return Err(self.at("a record after the end record".into()));
        }
        Ok(())
    }

    fn check_entry(&self, key: &[u8], value: Option<&[u8]>) -> Result<(), String> {
        if key.len() > MAX_KEY_BYTES {
            return Err(self.at(format!("a key of {} bytes (at most {MAX_KEY_BYTES})", key.len())));
        }
        match value {
            Some(v) if v.len() > MAX_VALUE_BYTES => {
                Err(self.at(format!("a value of {} bytes (at most {MAX_VALUE_BYTES})", v.len())))
            }
            _ => Ok(()),
        }
    }

    /// `message` at the current line.
    fn at(&self, message: String) -> String {
        format!("line {}: {message}", self.line)
    }

    /// `message` at the current line, in the block being read.
    fn in_block(&self, block: &Block, message: String) -> String {
        if message.starts_with("line ") {
            return format!("block {}, transaction {}: {message}", self.blocks, block.txs.len());
        }
        format!("block {}, transaction {}: {}", self.blocks, block.txs.len(), self.at(message))
    }

    fn record(&mut self) -> Result<Option<Record>, String> {
        let Some(text) = self.next_line()? else { return Ok(None) };
        serde_json::from_str(&text).map(Some).map_err(|e| match self.unterminated {
            true => self.at(format!("truncated: the file ends inside this line ({e})")),
            false => self.at(format!("not a record: {e}")),
        })
    }

    /// The next line without its newline, at most `max_line` bytes.
    fn next_line(&mut self) -> Result<Option<String>, String> {
        let mut bytes = Vec::new();
        let read = (&mut self.input)
            .take(self.max_line + 1)
            .read_until(b'\n', &mut bytes)
            .map_err(|e| format!("line {}: {e}", self.line + 1))?;
        if read == 0 {
            return Ok(None);
        }
        self.line += 1;
        self.unterminated = bytes.last() != Some(&b'\n');
        if !self.unterminated {
            bytes.pop();
        } else if bytes.len() as u64 > self.max_line {
            return Err(self.at(format!("longer than {} bytes", self.max_line)));
        }
        String::from_utf8(bytes).map(Some).map_err(|_| self.at("not UTF-8".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use executor_core::StateView;

    fn recorded() -> Vec<u8> {
        let mut genesis = Ledger::default();
        genesis.write(b"k1", Some(b"v1"));
        genesis.write(&[7; 40], Some(&[9; 100]));
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            transactions: Some(3),
            blocks: Some(2),
            source: Some("test".into()),
        };
        let mut bytes = Vec::new();
        let mut r = Recorder::new(&mut bytes, &header, &genesis).unwrap();
        r.block().unwrap();
        r.tx(b"a", &vec![(b"k1".to_vec(), Some(b"v2".to_vec()))]).unwrap();
        r.tx(b"b", &vec![(b"k1".to_vec(), None)]).unwrap();
        r.block().unwrap();
        r.tx(b"c", &Vec::new()).unwrap();
        assert_eq!(r.finish().unwrap(), End { transactions: 3, blocks: 2 });
        bytes
    }

    fn replay(bytes: Vec<u8>) -> Result<(Ledger, Vec<Block>), String> {
        let (mut replay, genesis) = Replay::from_reader(Box::new(std::io::Cursor::new(bytes)), 1 << 20)?;
        let mut blocks = Vec::new();
        while let Some(block) = replay.next_block()? {
            blocks.push(block);
        }
        Ok((genesis, blocks))
    }

    #[test]
    fn a_recording_reads_back_block_by_block() {
        let (genesis, blocks) = replay(recorded()).unwrap();
        assert_eq!(genesis.len(), 2);
        assert_eq!(genesis.get(&[7; 40]), Some(&[9u8; 100][..]), "long keys and values");
        assert_eq!(blocks.len(), 2);
        assert_eq!(blocks[0].txs, [b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(blocks[0].writes[1], vec![(b"k1".to_vec(), None)]);
        assert_eq!(blocks[1].txs, [b"c".to_vec()]);
    }

    #[test]
    fn broken_files_are_errors_naming_the_place() {
        let good = String::from_utf8(recorded()).unwrap();
        let lines: Vec<&str> = good.lines().collect();
        let without = |n: usize| lines.iter().take(n).map(|l| format!("{l}\n")).collect::<String>();
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("{\"format\":\"x\",\"version\":1}\n".into(), "format \"x\""),
            ("{\"format\":\"peer-workload\",\"version\":9}\n".into(), "version 9"),
            (without(lines.len() - 1), "block 1, transaction 1: line 8: truncated"),
            (without(5), "block 0, transaction 1: line 5: truncated"),
            (good[..good.len() - 10].to_string(), "line 9: truncated: the file ends inside this line"),
            (good.replace("\"tx\":\"62\"", "\"tx\":\"6g\""), "line 6: not a record"),
            (good.replace("{\"block\":1}", "{\"block\":5}"), "block 5 where block 1"),
            (
                good.replace("\"transactions\":3,\"blocks\":2}}", "\"transactions\":4,\"blocks\":2}}"),
                "says 4 transactions",
            ),
            (format!("{good}{{\"block\":2}}\n"), "after the end record"),
            (good.replace("{\"block\":0}", "{\"tx\":\"00\",\"writes\":[]}"), "before the first block"),
            (
                good.replace("\"writes\":[]", &format!("\"writes\":[[\"{}\",null]]", "ab".repeat(1025))),
                "a key of 1025 bytes",
            ),
        ];
        for (text, needle) in cases {
            let e = replay(text.into_bytes()).unwrap_err();
            assert!(e.contains(needle), "{e} should contain {needle}");
        }
        let long = format!("{}\n{{\"block\":0}}\n{{\"tx\":\"{}\",\"writes\":[]}}\n", lines[0], "00".repeat(3 << 20));
        let e = replay(long.into_bytes()).unwrap_err();
        assert!(e.contains("line 3: longer than"), "a line is read only up to its bound: {e}");
    }
}
