//! The client book's vocabulary.

text_enum!(
    /// A person or a company.
    ClientKind {
        Individual => "individual",
        Corporate => "corporate",
    }
);

text_enum!(
    /// How an RM was in touch with a client.
    InteractionChannel {
        Phone => "phone",
        Visit => "visit",
        Branch => "branch",
        Message => "message",
        Email => "email",
    }
);
