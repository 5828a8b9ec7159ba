//! RFC 6081 Figure 1 as data: for a source NAT kind and a destination NAT kind, whether
//! two Teredo clients behind them connect and with which extensions, as the RFC states it;
//! and a text rendering of the matrix for a test's output.

use super::NatKind;

/// A cell of Figure 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Support {
    /// "Yes": RFC 4380 alone.
    Yes,
    /// "SNS": with the Symmetric NAT Support Extension.
    Sns,
    /// "SNS+UPnP": with it and the UPnP-Enabled Symmetric NAT Extension.
    SnsUpnp,
    /// "SNS+PP": with it and the Port-Preserving Symmetric NAT Extension.
    SnsPp,
    /// "SNS+SS": with it and the Sequential Port-Symmetric NAT Extension.
    SnsSs,
    /// "No": no connectivity.
    No,
}

impl Support {
    /// The cell's text in Figure 1, e.g. `SNS+PP`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Yes => "Yes",
            Self::Sns => "SNS",
            Self::SnsUpnp => "SNS+UPnP",
            Self::SnsPp => "SNS+PP",
            Self::SnsSs => "SNS+SS",
            Self::No => "No",
        }
    }

    /// Whether the two clients reach each other directly.
    pub fn connects(self) -> bool {
        self != Self::No
    }
}

/// Figure 1's rows (source NAT) and columns (destination NAT), in [`NatKind::FIGURE_1`]'s
/// order.
const MATRIX: [[Support; 9]; 9] = {
    use Support::{No, Sns as S, SnsPp as Pp, SnsSs as Ss, SnsUpnp as U, Yes as Y};
    [
        [Y, Y, Y, Y, S, S, S, S, S],         // Cone
        [Y, Y, Y, Y, S, S, S, S, No],        // Address restricted
        [Y, Y, Y, Y, No, Pp, Ss, No, No],    // Port restricted
        [Y, Y, Y, Y, U, No, No, No, No],     // UPnP Port-restricted
        [S, S, No, U, U, No, No, No, No],    // UPnP Port symmetric
        [S, S, Pp, No, No, Pp, Ss, No, No],  // Port-preserving Port-symmetric
        [S, S, Ss, No, No, No, No, No, No],  // Sequential Port-symmetric
        [S, S, No, No, No, No, No, No, No],  // Port-symmetric
        [S, No, No, No, No, No, No, No, No], // Address-symmetric
    ]
};

fn position(kind: NatKind) -> usize {
    NatKind::FIGURE_1.iter().position(|k| *k == kind).unwrap_or(0)
}

/// Figure 1's cell for a client behind `source` and a peer behind `destination`.
pub fn support(source: NatKind, destination: NatKind) -> Support {
    MATRIX[position(source)][position(destination)]
}

/// A short column heading for `kind`, e.g. `PP-PS` for port-preserving port-symmetric.
pub fn short_label(kind: NatKind) -> &'static str {
    match kind {
        NatKind::FullCone => "Cone",
        NatKind::AddressRestricted => "Addr-R",
        NatKind::PortRestricted => "Port-R",
        NatKind::UpnpPortRestricted => "UPnP-PR",
        NatKind::UpnpPortSymmetric => "UPnP-PS",
        NatKind::PortPreservingSymmetric => "PP-PS",
        NatKind::SequentialSymmetric => "Seq-PS",
        NatKind::Symmetric => "PS",
        NatKind::AddressSymmetric => "Addr-S",
    }
}

/// The matrix as a text table (source rows, destination columns, Figure 1's order), each
/// cell `cell(source, destination)`; e.g. `render(|s, d| support(s, d).label().into())`.
pub fn render(cell: impl Fn(NatKind, NatKind) -> String) -> String {
    let cells: Vec<Vec<String>> =
        NatKind::FIGURE_1.iter().map(|s| NatKind::FIGURE_1.iter().map(|d| cell(*s, *d)).collect()).collect();
    let width = NatKind::FIGURE_1
        .iter()
        .map(|k| short_label(*k).len())
        .chain(cells.iter().flatten().map(String::len))
        .max()
        .unwrap_or(4);
    let row_head = NatKind::FIGURE_1.iter().map(|k| k.figure_label().len()).max().unwrap_or(10);
    let mut out = format!("{:row_head$} |", "source \\ destination");
    for d in NatKind::FIGURE_1 {
        out.push_str(&format!(" {:width$} |", short_label(d)));
    }
    out.push('\n');
    for (s, row) in NatKind::FIGURE_1.iter().zip(&cells) {
        out.push_str(&format!("{:row_head$} |", s.figure_label()));
        for c in row {
            out.push_str(&format!(" {c:width$} |"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn some_cells_as_in_the_rfc() {
        use NatKind::*;
        assert_eq!(support(FullCone, AddressSymmetric), Support::Sns);
        assert_eq!(support(AddressRestricted, AddressSymmetric), Support::No);
        assert_eq!(support(PortRestricted, PortPreservingSymmetric), Support::SnsPp);
        assert_eq!(support(PortPreservingSymmetric, SequentialSymmetric), Support::SnsSs);
        assert_eq!(support(SequentialSymmetric, PortPreservingSymmetric), Support::No);
        assert_eq!(support(UpnpPortSymmetric, UpnpPortRestricted), Support::SnsUpnp);
        assert_eq!(support(Symmetric, Symmetric), Support::No);
        let yes = NatKind::FIGURE_1
            .iter()
            .flat_map(|s| NatKind::FIGURE_1.iter().map(move |d| support(*s, *d)))
            .filter(|c| c.connects())
            .count();
        assert_eq!(yes, 16 + 18 + 3 + 3 + 3, "Yes, SNS, SNS+PP, SNS+SS, SNS+UPnP cells");
    }

    #[test]
    fn renders_every_row() {
        let t = render(|s, d| support(s, d).label().to_owned());
        assert_eq!(t.lines().count(), 10);
        assert!(t.lines().nth(1).is_some_and(|l| l.starts_with("Cone ")), "{t}");
        assert!(t.contains("SNS+UPnP"));
    }
}
