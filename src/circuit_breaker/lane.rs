//! The breaker's lanes (see [`crate::lane`]): how threads hammering one breaker avoid
//! writing to the same cache lines. The closed-state success path writes nothing that every
//! thread shares:
//!
//! * the permit's reference count: a permit holds an `Arc` of its thread's [`Lane`] rather
//!   than an `Arc` of the breaker's [`Core`];
//! * the cumulative call counter: one stripe per lane inside the core ([`Striped`]), summed when the
//!   metrics are read (so the totals stay exact);
//! * the count window and the consecutive-failure counter are only read while the window is
//!   full of successes and no failure is pending (see [`super::window`] and
//!   [`Core::on_result`]).

pub(crate) use crate::lane::{Padded, Striped, lane_count, thread_index};

use super::state::Core;

/// What a [`Permit`](super::Permit) holds: the breaker's core through its thread's lane.
pub(crate) type Lane = crate::lane::Lane<Core>;

/// One breaker: its core and its lanes. Dereferences to the [`Core`].
pub(crate) type Breaker = crate::lane::Lanes<Core>;

/// A breaker for `core`, with as many lanes as the core has stripes.
pub(crate) fn breaker(core: Core) -> Breaker {
    let lanes = core.lanes();
    crate::lane::Lanes::new(core, lanes)
}
