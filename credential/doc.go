// Package credential is the cryptographic core of zk-nym tickets: Pointcheval–Sanders
// signatures on BLS12-381 with Coconut-style blind threshold issuance (any t of n
// issuers), one-show tickets bound to a public ticket type and a week-bucketed expiry,
// unlinkable spends bound to the gateway's payment info, and double-spending tags that
// reveal the spender's public key when one ticket is spent twice.
//
// The parties and their calls:
//
//   - a trusted dealer runs GenerateThresholdKeys (a DKG is the next step);
//   - the client makes a UserSecret, calls NewTicketbookRequest and sends the
//     TicketbookRequest to issuers;
//   - each issuer calls BlindSign and returns a PartialTicketbook;
//   - the client calls Unblind on t of them and Aggregate to obtain a Ticketbook,
//     then Ticketbook.Spend per ticket;
//   - a gateway calls Verify (or VerifyBound), stores VerifiedSpend.Serial and
//     refuses serials it has seen; anybody holding two spends of one ticket calls
//     IdentifyDoubleSpender.
//
// Work on public data uses gnark-crypto; the issuers' secret-key operations (key
// generation and blind signing) use circl's constant-time BLS12-381 arithmetic. See
// docs/credentials.md for the scheme, the encodings and the security argument.
package credential
