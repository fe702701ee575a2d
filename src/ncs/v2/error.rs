//! Why bytes are not a valid NCSDK 2 graph (NCSDK2_GRAPH_FORMAT.md §9, "Recommended reader
//! validation"). Every variant names the field, record or relocation entry and its byte
//! offset, so that a user can find the damage with a hex dump.

/// A structural error of an NCSDK 2 (blob 2.3 / 2.4) graph file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum V2FormatError {
    /// Shorter than the prefix and header of its blob version.
    #[error("the file is {len} bytes; an NCSDK 2 graph has at least {min} (prefix + blob header)")]
    TooShort {
        /// Actual length.
        len: u64,
        /// Minimum length.
        min: u64,
    },
    /// Neither offset 34 (blob 2.3) nor offset 36 (blob 2.4) holds the magic 0x2204.
    #[error(
        "no blob magic 0x2204 at offset 34 or 36 (found 0x{found:08x} at 34): not an NCSDK 2 graph"
    )]
    BadMagic {
        /// The u32 at offset 34.
        found: u32,
    },
    /// The ELF-like prefix differs from the one every NCSDK 2 writer emits (§3.1).
    #[error("ELF-like prefix byte {offset} is 0x{found:02x}, expected 0x{expected:02x} (§3.1)")]
    BadPrefix {
        /// Offset of the first differing byte.
        offset: u64,
        /// Byte found.
        found: u8,
        /// Byte expected.
        expected: u8,
    },
    /// A blob version this reader (and the emulator) does not know.
    #[error("blob version {major}.{minor} (offset {offset}) is not one this tool knows: NCSDK 2 writes 2.3 (magic at 34) or 2.4 (magic at 36)")]
    UnknownVersion {
        /// Major version.
        major: u32,
        /// Minor version.
        minor: u32,
        /// Offset of the major-version field.
        offset: u64,
    },
    /// The header's file size disagrees with the real length.
    #[error("header file_size (offset {offset}) is {header} bytes but the file has {actual}: truncated or corrupt")]
    SizeMismatch {
        /// Offset of the field.
        offset: u64,
        /// Value in the header.
        header: u64,
        /// Real length.
        actual: u64,
    },
    /// A section offset lies past the end of the file or before the previous section.
    #[error("{section} offset {value} (header offset {offset}) is outside {lo}..={hi}: sections must follow the header in order and end inside the {len}-byte file")]
    SectionOutOfFile {
        /// Which section.
        section: &'static str,
        /// Offset found.
        value: u64,
        /// Header offset of the field.
        offset: u64,
        /// Smallest allowed value.
        lo: u64,
        /// Largest allowed value.
        hi: u64,
        /// File length.
        len: u64,
    },
    /// A stage- or buffer-section header field disagrees with the section layout.
    #[error("{field} at offset {offset} is {found}, expected {expected}")]
    BadField {
        /// Field name.
        field: &'static str,
        /// File offset of the field.
        offset: u64,
        /// Value found.
        found: u64,
        /// Value the layout requires.
        expected: u64,
    },
    /// A stage type whose record layout this reader does not know.
    #[error("stage {index} at offset {offset}: unknown stage type {code}")]
    UnknownStageType {
        /// Stage index.
        index: usize,
        /// Record offset.
        offset: u64,
        /// The code.
        code: u32,
    },
    /// A pre- or post-op code the 2.05 writer never emits.
    #[error("stage {index} at offset {offset}: unknown {field} code {code}")]
    UnknownOp {
        /// Stage index.
        index: usize,
        /// File offset of the field.
        offset: u64,
        /// "preop_type" or "postop_type".
        field: &'static str,
        /// The code.
        code: u32,
    },
    /// A record that runs past the stage section, or whose `next_stage` link is wrong.
    #[error("stage {index} at offset {offset}: {why}")]
    BadRecord {
        /// Stage index.
        index: usize,
        /// Record offset.
        offset: u64,
        /// What is wrong.
        why: String,
    },
    /// The relocation section header or a table lies outside the relocation section.
    #[error("relocation section: {field} (offset {offset}) is {found}; {why}")]
    BadRelocationSection {
        /// Field name.
        field: &'static str,
        /// File offset of the field.
        offset: u64,
        /// Value found.
        found: u64,
        /// Why it is wrong.
        why: String,
    },
    /// A relocation entry that points outside the section it relocates into.
    #[error("{table} relocation entry {entry} (offset {offset}): {why}")]
    BadRelocation {
        /// "blob" or "work".
        table: &'static str,
        /// Entry index.
        entry: usize,
        /// File offset of the entry.
        offset: u64,
        /// Why it is wrong.
        why: String,
    },
    /// A buffer descriptor that refers to a missing relocation entry or a wrong location.
    #[error("stage {index} ({op}) {slot} descriptor at offset {offset}: {why}")]
    BadDescriptor {
        /// Stage index.
        index: usize,
        /// Stage type name.
        op: &'static str,
        /// Operand role (input, output, taps, bias).
        slot: &'static str,
        /// File offset of the descriptor.
        offset: u64,
        /// Why it is wrong.
        why: String,
    },
}
