//! virtnetd: JSON-lines RPC server over UNIX sockets, access control, client.
