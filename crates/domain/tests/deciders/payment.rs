use domain::payment::*;
use domain::{CancelReason, OrderStatus};

use crate::helpers::*;

fn open() -> PaymentCommand {
    PaymentCommand::Open {
        order_id: order_id(),
        amount: eur(2500),
        deposit_reference: "MM-0001".into(),
        account: "DE89 3704 0044 0532 0130 00".into(),
        due_at: at(30),
        at: at(1),
    }
}

fn placed() -> PaymentEvent {
    PaymentEvent::PayPlaced(PayPlaced {
        order_id: order_id(),
        order_status: OrderStatus::AwaitingDeposit,
        amount: eur(2500),
        deposit_reference: "MM-0001".into(),
        account: "DE89 3704 0044 0532 0130 00".into(),
        due_at: at(30),
        at: at(1),
    })
}

fn checked() -> PaymentEvent {
    PaymentEvent::PayChecked(PayChecked {
        order_id: order_id(),
        order_status: OrderStatus::DepositConfirmed,
        amount: eur(2500),
        deposit_reference: "MM-0001".into(),
        at: at(10),
    })
}

fn canceled(reason: CancelReason, refund: bool, minute: u32) -> PaymentEvent {
    PaymentEvent::PayCanceled(PayCanceled {
        order_id: order_id(),
        order_status: OrderStatus::Cancelled,
        reason,
        refund,
        at: at(minute),
    })
}

#[test]
fn opening_a_payment_waits_for_a_deposit() {
    given::<Payment>(&[]).when(open()).then(vec![placed()]);
    given::<Payment>(&[placed()]).when(open()).then_nothing();
}

#[test]
fn the_seller_confirms_a_deposit_once() {
    given::<Payment>(&[placed()])
        .when(PaymentCommand::ConfirmDeposit { at: at(10) })
        .then(vec![checked()]);
    given::<Payment>(&[placed(), checked()])
        .when(PaymentCommand::ConfirmDeposit { at: at(11) })
        .then_nothing();
}

#[test]
fn a_deposit_cannot_be_confirmed_without_a_payment_or_after_a_cancel() {
    given::<Payment>(&[])
        .when(PaymentCommand::ConfirmDeposit { at: at(10) })
        .then_err(PaymentError::NotOpened);
    given::<Payment>(&[placed(), canceled(CancelReason::CustomerRequest, false, 5)])
        .when(PaymentCommand::ConfirmDeposit { at: at(10) })
        .then_err(PaymentError::Cancelled);
}

#[test]
fn the_customer_cancels_before_the_deposit_is_confirmed() {
    given::<Payment>(&[placed()])
        .when(PaymentCommand::CancelByCustomer {
            order_id: order_id(),
            at: at(5),
        })
        .then(vec![canceled(CancelReason::CustomerRequest, false, 5)]);
}

#[test]
fn cancel_is_refused_after_deposit_confirmed() {
    given::<Payment>(&[placed(), checked()])
        .when(PaymentCommand::CancelByCustomer {
            order_id: order_id(),
            at: at(12),
        })
        .then_err(PaymentError::DepositAlreadyConfirmed);
}

#[test]
fn out_of_stock_after_the_deposit_cancels_with_a_refund() {
    given::<Payment>(&[placed(), checked()])
        .when(PaymentCommand::CancelForOrder {
            order_id: order_id(),
            reason: CancelReason::OutOfStock,
            at: at(12),
        })
        .then(vec![canceled(CancelReason::OutOfStock, true, 12)]);
    given::<Payment>(&[
        placed(),
        checked(),
        canceled(CancelReason::OutOfStock, true, 12),
    ])
    .when(PaymentCommand::CancelForOrder {
        order_id: order_id(),
        reason: CancelReason::OutOfStock,
        at: at(13),
    })
    .then_nothing();
}

#[test]
fn an_overdue_deposit_cancels_the_payment_only_once_due() {
    given::<Payment>(&[placed()])
        .when(PaymentCommand::Expire { now: at(29) })
        .then_err(PaymentError::NotDueYet);
    given::<Payment>(&[placed()])
        .when(PaymentCommand::Expire { now: at(30) })
        .then(vec![canceled(CancelReason::DepositOverdue, false, 30)]);
    given::<Payment>(&[placed(), checked()])
        .when(PaymentCommand::Expire { now: at(40) })
        .then_err(PaymentError::DepositAlreadyConfirmed);
}

#[test]
fn a_cancel_before_the_payment_opens_keeps_it_from_ever_opening() {
    let cancelled = canceled(CancelReason::CustomerRequest, false, 0);
    given::<Payment>(&[])
        .when(PaymentCommand::CancelByCustomer {
            order_id: order_id(),
            at: at(0),
        })
        .then(vec![cancelled.clone()]);
    given::<Payment>(std::slice::from_ref(&cancelled))
        .when(open())
        .then_err(PaymentError::Cancelled);
    given::<Payment>(&[cancelled])
        .when(PaymentCommand::ConfirmDeposit { at: at(10) })
        .then_err(PaymentError::Cancelled);
}

#[test]
fn a_customer_cannot_cancel_a_payment_cancelled_for_another_reason() {
    given::<Payment>(&[
        placed(),
        checked(),
        canceled(CancelReason::OutOfStock, true, 12),
    ])
    .when(PaymentCommand::CancelByCustomer {
        order_id: order_id(),
        at: at(13),
    })
    .then_err(PaymentError::Cancelled);
    given::<Payment>(&[placed(), canceled(CancelReason::CustomerRequest, false, 5)])
        .when(PaymentCommand::CancelByCustomer {
            order_id: order_id(),
            at: at(6),
        })
        .then_nothing();
}
