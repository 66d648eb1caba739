use domain::product::{ProductEvent, QtyDecreased, QtyIncreased, StockAdded};
use domain::reservation::*;
use domain::{OrderId, OrderStatus, ProductId};

use crate::helpers::*;

fn other_order() -> OrderId {
    OrderId::parse("7c9e6679-7425-40de-944b-e07fc1f90ae7").unwrap()
}

fn planned(movement: Movement, product_revision: u64) -> StockMovePlanned {
    StockMovePlanned {
        order_id: order_id(),
        product_id: product_id(),
        movement,
        quantity: qty(2),
        product_revision,
        at: at(2),
    }
}

fn decreased(order: OrderId) -> ProductEvent {
    ProductEvent::QtyDecreased(QtyDecreased {
        product_id: product_id(),
        order_id: order,
        order_status: OrderStatus::Preparing,
        quantity: qty(2),
        stock_after: 3,
        at: at(2),
    })
}

fn increased(order: OrderId) -> ProductEvent {
    ProductEvent::QtyIncreased(QtyIncreased {
        product_id: product_id(),
        order_id: order,
        order_status: OrderStatus::Cancelled,
        quantity: qty(2),
        stock_after: 5,
        at: at(3),
    })
}

fn latest(plan: StockMovePlanned) -> ReservationState {
    ReservationState { latest: Some(plan) }
}

#[test]
fn an_order_without_a_plan_holds_nothing() {
    assert_eq!(
        ReservationState::default().held(product_id(), None),
        Ok(Held::Nothing)
    );
}

#[test]
fn a_take_happened_when_the_planned_revision_holds_it() {
    let state = latest(planned(Movement::Take, 7));
    assert_eq!(state.revision_to_check(), Some(7));
    assert_eq!(
        state.held(product_id(), Some(&decreased(order_id()))),
        Ok(Held::Taken(qty(2)))
    );
}

#[test]
fn a_take_did_not_happen_when_another_event_holds_its_revision() {
    // A crash after planning, or a lost race: the product moved on without this order.
    let state = latest(planned(Movement::Take, 7));
    assert_eq!(
        state.held(product_id(), Some(&decreased(other_order()))),
        Ok(Held::Nothing)
    );
    let added = ProductEvent::StockAdded(StockAdded {
        product_id: product_id(),
        quantity: qty(1),
        stock_after: 6,
        change_id: None,
        at: at(2),
    });
    assert_eq!(state.held(product_id(), Some(&added)), Ok(Held::Nothing));
    // Not written yet: not happened so far (a new plan names the same revision and races it).
    assert_eq!(state.held(product_id(), None), Ok(Held::Nothing));
}

#[test]
fn a_give_back_is_settled_the_same_way() {
    let state = latest(planned(Movement::GiveBack, 9));
    assert_eq!(
        state.held(product_id(), Some(&increased(order_id()))),
        Ok(Held::GivenBack)
    );
    // Not happened: the stock is still taken (a give-back is planned only for taken stock).
    assert_eq!(
        state.held(product_id(), Some(&increased(other_order()))),
        Ok(Held::Taken(qty(2)))
    );
    assert_eq!(state.held(product_id(), None), Ok(Held::Taken(qty(2))));
}

#[test]
fn a_plan_on_another_product_is_refused() {
    let mut elsewhere = planned(Movement::Take, 3);
    elsewhere.product_id = ProductId::parse("6ba7b810-9dad-11d1-80b4-00c04fd430c8").unwrap();
    given::<Reservation>(&[ReservationEvent::StockMovePlanned(elsewhere.clone())])
        .when(ReservationCommand::Plan(planned(Movement::Take, 4)))
        .then_err(ReservationError::OtherProduct(elsewhere.product_id));
    given::<Reservation>(&[ReservationEvent::StockMovePlanned(planned(
        Movement::Take,
        3,
    ))])
    .when(ReservationCommand::Plan(planned(Movement::GiveBack, 4)))
    .then(vec![ReservationEvent::StockMovePlanned(planned(
        Movement::GiveBack,
        4,
    ))]);
}

#[test]
fn a_history_written_before_reservations_gives_each_order_its_latest_move() {
    let history = [
        (3, decreased(order_id())),
        (4, decreased(other_order())),
        (5, increased(order_id())),
    ];
    let plans = plans_of_history(history.iter().map(|(r, e)| (*r, e)), at(2));
    let of = |order: OrderId| plans.iter().find(|p| p.order_id == order).cloned();
    assert_eq!(plans.len(), 2);
    assert_eq!(of(order_id()), Some(planned(Movement::GiveBack, 5)));
    let taken = of(other_order()).unwrap();
    assert_eq!(
        (taken.movement, taken.product_revision),
        (Movement::Take, 4)
    );
    // Read back at their revisions, they say what each order holds.
    assert_eq!(
        latest(of(order_id()).unwrap()).held(product_id(), Some(&history[2].1)),
        Ok(Held::GivenBack)
    );
    assert_eq!(
        latest(taken).held(product_id(), Some(&history[1].1)),
        Ok(Held::Taken(qty(2)))
    );
}

#[test]
fn an_order_holds_stock_of_one_product_only() {
    let mut elsewhere = planned(Movement::Take, 3);
    elsewhere.product_id = ProductId::parse("6ba7b810-9dad-11d1-80b4-00c04fd430c8").unwrap();
    assert_eq!(
        latest(elsewhere.clone()).held(product_id(), None),
        Err(ReservationError::OtherProduct(elsewhere.product_id))
    );
}
