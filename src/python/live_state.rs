//! The Python algorithm as a live session drives it ([`LiveStrategy`]): its state saved into
//! the journal and restored after a restart by `rustybt_api._live.state`, saved `Order`
//! handles re-bound by client order id.

use std::collections::HashMap;

use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict};
use rust_decimal::Decimal;

use super::PyStrategy;
use super::strategy::ReloadEvent;
use crate::engine::Stop;
use crate::live::journal::{AlgoState, FillRecord, Journal};
use crate::live::session::{LiveStrategy, Restored, SaveFailure, SavedState};
use crate::model::{OrderId, TimestampNs};

impl LiveStrategy for PyStrategy {
    fn run_schedules_at(&mut self, now: TimestampNs) -> Result<bool, Stop> {
        PyStrategy::run_schedules_at(self, now)
    }

    fn save_state(&mut self, new_ids: &[(OrderId, String)]) -> Result<SavedState, SaveFailure> {
        Python::attach(|py| {
            let result = (|| -> PyResult<SavedState> {
                let module = py.import("rustybt_api._live.state")?;
                // `Order` handles are saved as the journal's client order ids: one dict for
                // the session, grown by the orders sent since the last save (rebuilding it at
                // every checkpoint made a long session's checkpoints ever slower).
                let ids = self
                    .live_order_ids
                    .get_or_insert_with(|| PyDict::new(py).unbind())
                    .bind(py)
                    .clone();
                for (id, client_id) in new_ids {
                    ids.set_item(id.0, client_id)?;
                }
                let dumped = module.call_method1("dump", (self.algorithm().bind(py), ids))?;
                let (format, data, skipped): (String, Bound<'_, PyBytes>, Vec<String>) =
                    dumped.extract()?;
                Ok(SavedState {
                    format,
                    data: data.as_bytes().to_vec(),
                    skipped,
                })
            })();
            result.map_err(|e| {
                if e.is_instance_of::<pyo3::exceptions::PyKeyboardInterrupt>(py) {
                    SaveFailure::Interrupted
                } else {
                    SaveFailure::Failed(e.to_string())
                }
            })
        })
    }

    fn restore_state(
        &mut self,
        saved: &AlgoState,
        live: &HashMap<String, OrderId>,
        journal: &Journal,
    ) -> Result<Restored, String> {
        Python::attach(|py| {
            let result = (|| -> PyResult<Restored> {
                let module = py.import("rustybt_api._live.state")?;
                let data = PyBytes::new(py, &saved.data);
                let wanted: Vec<String> = module
                    .call_method1("order_ids", (saved.format.as_str(), &data))?
                    .extract()?;
                let orders = saved_orders(py, self, &wanted, live, journal)?;
                let (restored, rebound, not_restored) = module
                    .call_method1(
                        "load",
                        (
                            self.algorithm().bind(py),
                            saved.format.as_str(),
                            data,
                            orders,
                        ),
                    )?
                    .extract()?;
                Ok(Restored {
                    restored,
                    rebound,
                    not_restored,
                })
            })();
            result.map_err(|e| e.to_string())
        })
    }

    fn reload_events(&self) -> &[ReloadEvent] {
        PyStrategy::reload_events(self)
    }

    /// The algorithm's `warmup` attribute: a whole number of bars, or None (not said).
    fn declared_warmup(&self) -> Result<Option<usize>, String> {
        Python::attach(|py| {
            let value = match self.algorithm().bind(py).getattr("warmup") {
                Ok(value) if !value.is_none() => value,
                _ => return Ok(None),
            };
            let bars = (!value.is_instance_of::<PyBool>())
                .then(|| value.extract::<u32>().ok())
                .flatten();
            match bars {
                Some(bars) => Ok(Some(bars as usize)),
                None => Err(format!(
                    "the algorithm's `warmup` must be a whole number of bars (0 or more), not \
                     `{}`; it is how many bars of history a live session loads before its \
                     first bar",
                    value.repr().map(|r| r.to_string()).unwrap_or_default()
                )),
            }
        })
    }
}

/// The orders the saved state names, by client order id: an `Order` handle for those the
/// session tracks (`live`), else the journal's fields of the order (final status, fills,
/// price).
fn saved_orders<'py>(
    py: Python<'py>,
    strategy: &PyStrategy,
    wanted: &[String],
    live: &HashMap<String, OrderId>,
    journal: &Journal,
) -> PyResult<Bound<'py, PyDict>> {
    let orders = PyDict::new(py);
    if wanted.is_empty() {
        return Ok(orders);
    }
    let fills = journal
        .fills()
        .map_err(|e| pyo3::exceptions::PyOSError::new_err(e.to_string()))?;
    for client_id in wanted {
        if let Some(id) = live.get(client_id.as_str()) {
            orders.set_item(
                client_id,
                crate::python::objects::Order::handle(py, *id, strategy.session())?,
            )?;
            continue;
        }
        let Ok(order) = journal.order(client_id) else {
            continue;
        };
        let own: Vec<&FillRecord> = fills
            .iter()
            .filter(|(_, _, f)| &f.client_order_id == client_id)
            .map(|(_, _, f)| f)
            .collect();
        let quantity: Decimal = own.iter().map(|f| f.quantity).sum();
        let fees: Decimal = own.iter().map(|f| f.fee).sum();
        // The average price of its fills (one fill: its price, digit for digit).
        let fill_price = match own.as_slice() {
            [] => None,
            [one] => Some(one.price),
            many => Some(many.iter().map(|f| f.quantity * f.price).sum::<Decimal>() / quantity),
        };
        let fields = PyDict::new(py);
        fields.set_item("client_order_id", client_id)?;
        fields.set_item("symbol", &order.symbol)?;
        fields.set_item("side", order.side)?;
        fields.set_item("quantity", order.quantity)?;
        fields.set_item("status", order.status.as_deref().unwrap_or("new"))?;
        fields.set_item("filled_quantity", order.filled())?;
        fields.set_item("fill_price", fill_price)?;
        fields.set_item("fees", fees)?;
        fields.set_item("order_type", order.order_type.as_str())?;
        fields.set_item("limit", order.limit_price)?;
        fields.set_item("stop", order.stop_price)?;
        fields.set_item("tif", order.time_in_force.as_str())?;
        fields.set_item("reason", order.reason.as_deref())?;
        fields.set_item("submitted_at_ns", order.created_at)?;
        orders.set_item(client_id, fields)?;
    }
    Ok(orders)
}
