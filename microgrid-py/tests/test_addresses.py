"""microgrid.regtest_address: distinct, valid, repeatable made-up addresses."""

import pytest

import microgrid


def test_one_address_per_seed_and_the_same_for_the_same_seed():
    addresses = [microgrid.regtest_address(i) for i in range(200)]
    assert len(set(addresses)) == 200
    assert addresses == [microgrid.regtest_address(i) for i in range(200)]
    assert all(a.startswith("bcrt1q") for a in addresses)


@pytest.mark.parametrize("kind, prefix", [("p2wpkh", "bcrt1q"), ("p2pkh", ("m", "n")), ("p2tr", "bcrt1p")])
def test_each_output_type_is_accepted_as_a_payout_address(kind, prefix):
    address = microgrid.regtest_address(7, kind)
    assert address.startswith(prefix)
    grid = microgrid.Grid()
    import datetime as dt

    grid.register("a", "A", microgrid.ProsumerKind.HOUSEHOLD, dt.date(2026, 1, 1), address=address)
    assert grid.prosumers()[0]["address"] == address


@pytest.mark.parametrize("bad, kind", [(-1, "out_of_range"), ("7", "invalid_type")])
def test_a_bad_seed_is_a_validation_error(bad, kind):
    with pytest.raises(microgrid.ValidationError) as raised:
        microgrid.regtest_address(bad)
    assert raised.value.kind == kind
    assert raised.value.details["argument"] == "seed"


def test_an_unknown_output_type_is_a_validation_error_naming_it():
    with pytest.raises(microgrid.ValidationError) as raised:
        microgrid.regtest_address(1, "p2wsh")
    assert raised.value.details["argument"] == "output_type"
    assert raised.value.details["value"] == "p2wsh"
