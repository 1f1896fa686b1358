//! The challenge service's reads and writes (owned by the service work).
